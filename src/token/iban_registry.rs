//! The SWIFT IBAN Registry (release 100) as data: one entry per IBAN country, with the national check-digit scheme.
//!
//! Structures are in the registry's own notation (`8!n10!n`: `n` digits, `a` upper-case letters, `c` upper-case
//! letters or digits). Positions are 0-based, end-exclusive offsets into the BBAN (the IBAN without its first four
//! characters). Territories that use another country's prefix (GF, GP, … use `FR`; AX uses `FI`; IM, JE, GG use
//! `GB`) have no entry of their own because no IBAN starts with their code.
//!
//! The national schemes were checked against the registry examples and against real published IBANs (see the
//! tests in `iban.rs`). Countries whose account check digits are bank-specific or unpublished (DE, GB, IE, NL, AT,
//! DK/FO/GL, SE, CH/LI, IL, BR, …) are [`National::None`]: a token for them is valid in structure and ISO 13616
//! check digits only — except DE, whose per-bank methods are published and applied outside this table (see
//! `iban_de`).

/// A national check-digit scheme, named after the country that defined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum National {
    /// No published country-wide scheme.
    None,
    /// AL: one digit after bank + branch, weights 9-7-3-1 over the first seven digits, mod 10.
    Albania,
    /// BE: the last two digits are the first ten mod 97 (97 instead of 0).
    Belgium,
    /// CZ, SK: prefix (6 digits) and account number (10 digits) each weighted mod 11 == 0.
    CzechSlovak,
    /// EE: last digit, "7-3-1" weights from the right over the account number (BBAN without the bank code).
    Estonia,
    /// ES: two control digits, weights 1-2-4-8-5-10-9-7-3-6 mod 11, over "00" + bank + branch and over the account.
    Spain,
    /// FI: Luhn over the whole BBAN.
    Finland,
    /// FR, MC, and the French-style RIB key of BI, DJ, MR, TN: the BBAN (letters as the RIB table's digits) is
    /// 0 mod 97, i.e. key = 97 − (number × 100 mod 97).
    RibKey,
    /// HR: ISO 7064 MOD 11,10 on the bank code (7th digit) and on the account number (10th digit).
    Croatia,
    /// HU: weights 9-7-3-1 mod 10 on bank + branch (8th digit) and on the account number (24th digit).
    Hungary,
    /// IS: the check digit of the account holder's kennitala (last ten digits), weights 3-2-7-6-5-4-3-2 mod 11.
    Iceland,
    /// IT, SM: the CIN letter in front, odd/even conversion tables mod 26.
    ItalyCin,
    /// BA, ME, MK, PT, RS, SI, ST, TL, XK: ISO 7064 MOD 97-10 over the BBAN (the BBAN is 1 mod 97), which is why
    /// every IBAN of these countries has the same ISO check digits (BA39, ME25, MK07, PT50, RS35, SI56, ST23, TL38,
    /// XK05).
    Mod97_10,
    /// NO: the last digit, weights 5-4-3-2-7-6-5-4-3-2 mod 11 (accounts whose check would be 10 are never issued).
    Norway,
    /// PL: the 8th digit of the sort code, weights 3-9-7-1 mod 10 over bank + branch.
    Poland,
    /// RU: the account key (9th digit of the 20-digit account), weights 7-1-3 over the last three digits of the BIK
    /// and the account, mod 10 (the rule for accounts at credit institutions).
    Russia,
}

/// One country of the IBAN registry.
#[derive(Debug)]
pub(super) struct Country {
    /// ISO 3166 code that starts the IBAN.
    pub(super) code: &'static str,
    /// Total IBAN length.
    pub(super) length: usize,
    /// BBAN structure in registry notation.
    pub(super) bban: &'static str,
    /// Bank identifier.
    pub(super) bank: (usize, usize),
    /// Branch identifier, where the registry defines one.
    pub(super) branch: Option<(usize, usize)>,
    /// National check-digit scheme.
    pub(super) national: National,
    /// Fields that are neither bank nor account data (a reserved digit, a currency code) and that a token copies.
    pub(super) fixed: &'static [(usize, usize)],
    /// The registry's example IBAN (electronic format).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) example: &'static str,
}

const fn c(
    code: &'static str,
    length: usize,
    bban: &'static str,
    bank: (usize, usize),
    branch: Option<(usize, usize)>,
    national: National,
    example: &'static str,
) -> Country {
    Country { code, length, bban, bank, branch, national, fixed: &[], example }
}

use National as N;

/// Every country of the SWIFT IBAN Registry, release 100, sorted by code.
pub(super) static COUNTRIES: &[Country] = &[
    c("AD", 24, "4!n4!n12!c", (0, 4), Some((4, 8)), N::None, "AD1200012030200359100100"),
    c("AE", 23, "3!n16!n", (0, 3), None, N::None, "AE070331234567890123456"),
    c("AL", 28, "8!n16!c", (0, 3), Some((3, 8)), N::Albania, "AL47212110090000000235698741"),
    c("AT", 20, "5!n11!n", (0, 5), None, N::None, "AT611904300234573201"),
    c("AZ", 28, "4!a20!c", (0, 4), None, N::None, "AZ21NABZ00000000137010001944"),
    c("BA", 20, "3!n3!n8!n2!n", (0, 3), Some((3, 6)), N::Mod97_10, "BA391290079401028494"),
    c("BE", 16, "3!n7!n2!n", (0, 3), None, N::Belgium, "BE68539007547034"),
    c("BG", 22, "4!a4!n2!n8!c", (0, 4), Some((4, 8)), N::None, "BG80BNBG96611020345678"),
    c("BH", 22, "4!a14!c", (0, 4), None, N::None, "BH67BMAG00001299123456"),
    c("BI", 27, "5!n5!n11!n2!n", (0, 5), Some((5, 10)), N::RibKey, "BI4210000100010000332045181"),
    c("BR", 29, "8!n5!n10!n1!a1!c", (0, 8), Some((8, 13)), N::None, "BR1800360305000010009795493C1"),
    c("BY", 28, "4!c4!n16!c", (0, 4), None, N::None, "BY13NBRB3600900000002Z00AB00"),
    c("CH", 21, "5!n12!c", (0, 5), None, N::None, "CH9300762011623852957"),
    c("CR", 22, "4!n14!n", (0, 4), None, N::None, "CR05015202001026284066"),
    c("CY", 28, "3!n5!n16!c", (0, 3), Some((3, 8)), N::None, "CY17002001280000001200527600"),
    c("CZ", 24, "4!n6!n10!n", (0, 4), None, N::CzechSlovak, "CZ6508000000192000145399"),
    c("DE", 22, "8!n10!n", (0, 8), None, N::None, "DE89370400440532013000"),
    c("DJ", 27, "5!n5!n11!n2!n", (0, 5), Some((5, 10)), N::RibKey, "DJ2100010000000154000100186"),
    c("DK", 18, "4!n9!n1!n", (0, 4), None, N::None, "DK5000400440116243"),
    c("DO", 28, "4!c20!n", (0, 4), None, N::None, "DO28BAGR00000001212453611324"),
    c("EE", 20, "2!n14!n", (0, 2), None, N::Estonia, "EE382200221020145685"),
    c("EG", 29, "4!n4!n17!n", (0, 4), Some((4, 8)), N::None, "EG380019000500000000263180002"),
    c("ES", 24, "4!n4!n1!n1!n10!n", (0, 4), Some((4, 8)), N::Spain, "ES9121000418450200051332"),
    c("FI", 18, "3!n11!n", (0, 3), None, N::Finland, "FI2112345600000785"),
    c("FK", 18, "2!a12!n", (0, 2), None, N::None, "FK88SC123456789012"),
    c("FO", 18, "4!n9!n1!n", (0, 4), None, N::None, "FO6264600001631634"),
    // The registry text names no FR branch; the guichet (positions 6-10, as for MC) is treated as one.
    c("FR", 27, "5!n5!n11!c2!n", (0, 5), Some((5, 10)), N::RibKey, "FR1420041010050500013M02606"),
    c("GB", 22, "4!a6!n8!n", (0, 4), Some((4, 10)), N::None, "GB29NWBK60161331926819"),
    c("GE", 22, "2!a16!n", (0, 2), None, N::None, "GE29NB0000000101904917"),
    c("GI", 23, "4!a15!c", (0, 4), None, N::None, "GI75NWBK000000007099453"),
    c("GL", 18, "4!n9!n1!n", (0, 4), None, N::None, "GL8964710001000206"),
    c("GR", 27, "3!n4!n16!c", (0, 3), Some((3, 7)), N::None, "GR1601101250000000012300695"),
    c("GT", 28, "4!c20!c", (0, 4), None, N::None, "GT82TRAJ01020000001210029690"),
    c("HN", 28, "4!a20!n", (0, 4), None, N::None, "HN88CABF00000000000250005469"),
    c("HR", 21, "7!n10!n", (0, 7), None, N::Croatia, "HR1210010051863000160"),
    c("HU", 28, "3!n4!n1!n15!n1!n", (0, 3), Some((3, 7)), N::Hungary, "HU42117730161111101800000000"),
    c("IE", 22, "4!a6!n8!n", (0, 4), Some((4, 10)), N::None, "IE29AIBK93115212345678"),
    c("IL", 23, "3!n3!n13!n", (0, 3), Some((3, 6)), N::None, "IL620108000000099999999"),
    c("IQ", 23, "4!a3!n12!n", (0, 4), Some((4, 7)), N::None, "IQ98NBIQ850123456789012"),
    c("IS", 26, "4!n2!n6!n10!n", (0, 2), Some((2, 4)), N::Iceland, "IS140159260076545510730339"),
    c("IT", 27, "1!a5!n5!n12!c", (1, 6), Some((6, 11)), N::ItalyCin, "IT60X0542811101000000123456"),
    c("JO", 30, "4!a4!n18!c", (0, 4), Some((4, 8)), N::None, "JO94CBJO0010000000000131000302"),
    c("KW", 30, "4!a22!c", (0, 4), None, N::None, "KW81CBKU0000000000001234560101"),
    c("KZ", 20, "3!n13!c", (0, 3), None, N::None, "KZ86125KZT5004100100"),
    c("LB", 28, "4!n20!c", (0, 4), None, N::None, "LB62099900000001001901229114"),
    c("LC", 32, "4!a24!c", (0, 4), None, N::None, "LC55HEMM000100010012001200023015"),
    c("LI", 21, "5!n12!c", (0, 5), None, N::None, "LI21088100002324013AA"),
    c("LT", 20, "5!n11!n", (0, 5), None, N::None, "LT121000011101001000"),
    c("LU", 20, "3!n13!c", (0, 3), None, N::None, "LU280019400644750000"),
    c("LV", 21, "4!a13!c", (0, 4), None, N::None, "LV80BANK0000435195001"),
    c("LY", 25, "3!n3!n15!n", (0, 3), Some((3, 6)), N::None, "LY83002048000020100120361"),
    c("MC", 27, "5!n5!n11!c2!n", (0, 5), Some((5, 10)), N::RibKey, "MC5811222000010123456789030"),
    c("MD", 24, "2!c18!c", (0, 2), None, N::None, "MD24AG000225100013104168"),
    c("ME", 22, "3!n13!n2!n", (0, 3), None, N::Mod97_10, "ME25505000012345678951"),
    c("MK", 19, "3!n10!c2!n", (0, 3), None, N::Mod97_10, "MK07250120000058984"),
    c("MN", 20, "4!n12!n", (0, 4), None, N::None, "MN121234123456789123"),
    c("MR", 27, "5!n5!n11!n2!n", (0, 5), Some((5, 10)), N::RibKey, "MR1300020001010000123456753"),
    c("MT", 31, "4!a5!n18!c", (0, 4), Some((4, 9)), N::None, "MT84MALT011000012345MTLCAST001S"),
    // The trailing "000" and the currency code are copied into tokens.
    Country {
        fixed: &[(20, 26)],
        ..c("MU", 30, "4!a2!n2!n12!n3!n3!a", (0, 6), Some((6, 8)), N::None, "MU17BOMM0101101030300200000MUR")
    },
    c("NI", 28, "4!a20!n", (0, 4), None, N::None, "NI45BAPR00000013000003558124"),
    c("NL", 18, "4!a10!n", (0, 4), None, N::None, "NL91ABNA0417164300"),
    c("NO", 15, "4!n6!n1!n", (0, 4), None, N::Norway, "NO9386011117947"),
    c("OM", 23, "3!n16!c", (0, 3), None, N::None, "OM810180000001299123456"),
    c("PK", 24, "4!a16!c", (0, 4), None, N::None, "PK36SCBL0000001123456702"),
    c("PL", 28, "8!n16!n", (0, 8), None, N::Poland, "PL61109010140000071219812874"),
    c("PS", 29, "4!a21!c", (0, 4), None, N::None, "PS92PALS000000000400123456702"),
    c("PT", 25, "4!n4!n11!n2!n", (0, 4), Some((4, 8)), N::Mod97_10, "PT50000201231234567890154"),
    c("QA", 29, "4!a21!c", (0, 4), None, N::None, "QA58DOHB00001234567890ABCDEFG"),
    c("RO", 24, "4!a16!c", (0, 4), None, N::None, "RO49AAAA1B31007593840000"),
    c("RS", 22, "3!n13!n2!n", (0, 3), None, N::Mod97_10, "RS35260005601001611379"),
    c("RU", 33, "9!n5!n15!c", (0, 9), Some((9, 14)), N::Russia, "RU0304452522540817810538091310419"),
    c("SA", 24, "2!n18!c", (0, 2), None, N::None, "SA0380000000608010167519"),
    // The currency code is copied into tokens.
    Country {
        fixed: &[(24, 27)],
        ..c("SC", 31, "4!a2!n2!n16!n3!a", (0, 6), Some((6, 8)), N::None, "SC18SSCB11010000000000001497USD")
    },
    c("SD", 18, "2!n12!n", (0, 2), None, N::None, "SD2129010501234001"),
    c("SE", 24, "3!n16!n1!n", (0, 3), None, N::None, "SE4550000000058398257466"),
    c("SI", 19, "5!n8!n2!n", (0, 5), None, N::Mod97_10, "SI56263300012039086"),
    c("SK", 24, "4!n6!n10!n", (0, 4), None, N::CzechSlovak, "SK3112000000198742637541"),
    c("SM", 27, "1!a5!n5!n12!c", (1, 6), Some((6, 11)), N::ItalyCin, "SM86U0322509800000000270100"),
    c("SO", 23, "4!n3!n12!n", (0, 4), Some((4, 7)), N::None, "SO211000001001000100141"),
    c("ST", 25, "4!n4!n11!n2!n", (0, 4), Some((4, 8)), N::Mod97_10, "ST23000100010051845310146"),
    c("SV", 28, "4!a20!n", (0, 4), None, N::None, "SV62CENR00000000000000700025"),
    c("TL", 23, "3!n14!n2!n", (0, 3), None, N::Mod97_10, "TL380080012345678910157"),
    c("TN", 24, "2!n3!n13!n2!n", (0, 2), Some((2, 5)), N::RibKey, "TN5910006035183598478831"),
    // The reserved digit after the bank code (always 0) is copied into tokens.
    Country { fixed: &[(5, 6)], ..c("TR", 26, "5!n1!n16!c", (0, 5), None, N::None, "TR330006100519786457841326") },
    c("UA", 29, "6!n19!c", (0, 6), None, N::None, "UA213223130000026007233566001"),
    c("VA", 22, "3!n15!n", (0, 3), None, N::None, "VA59001123000012345678"),
    c("VG", 24, "4!a16!n", (0, 4), None, N::None, "VG96VPVG0000012345678901"),
    c("XK", 20, "4!n10!n2!n", (0, 2), Some((2, 4)), N::Mod97_10, "XK051212012345678906"),
    c("YE", 30, "4!a4!n18!c", (0, 4), Some((4, 8)), N::None, "YE15CBYE0001018861234567891234"),
];
