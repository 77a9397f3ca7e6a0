//! TEMPORARY STUB
use super::{Invalid, Layout, Parsed};
use rand::Rng;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IbanFormat {
    #[default]
    KeepBank,
}
impl std::str::FromStr for IbanFormat {
    type Err = Invalid;
    fn from_str(_s: &str) -> Result<Self, Invalid> {
        Ok(Self::KeepBank)
    }
}
pub fn parse(input: &str) -> Result<Parsed, Invalid> {
    Ok(Parsed {
        canonical: input.into(),
        layout: Layout::Identity,
    })
}
pub fn validate(_c: &str) -> Result<(), Invalid> {
    Ok(())
}
pub fn generate<R: Rng + ?Sized>(c: &str, _f: IbanFormat, _a: u32, rng: &mut R) -> String {
    format!("{}{}", c, rng.gen::<u8>())
}
