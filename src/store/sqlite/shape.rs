//! Statement shapes: multi-row statements come in a few sizes (powers of two) only.
//!
//! A connection keeps the compiled program of the last 100 distinct SQL texts it ran (sqlx's statement cache),
//! and the program of a statement over dozens of rows weighs tens of KiB. With one text per row count, the
//! writer's batches could make more distinct statements than that (the combined lookup had one per pair of key
//! counts), each compiled again once evicted; with powers of two there are a few per kind of statement.

/// The row count a statement for `n` rows is compiled for: the next power of two.
pub(super) fn shape(n: usize) -> usize {
    n.next_power_of_two()
}

/// `keys`, then the last key again up to `shape(keys.len())`: for statements where a repeated key changes
/// nothing (`IN (VALUES …)` lookups and updates, inserts that ignore conflicts).
pub(super) fn padded<T>(keys: &[T]) -> impl Iterator<Item = &T> {
    padded_to(keys, shape(keys.len()))
}

/// `keys`, then the last key again up to `len` keys in all (none added if there are that many already).
pub(super) fn padded_to<T>(keys: &[T], len: usize) -> impl Iterator<Item = &T> {
    let pad = len.saturating_sub(keys.len());
    keys.iter().chain(keys.last().into_iter().cycle().take(pad))
}

/// `items` cut into runs whose lengths are powers of two, at most `max` (itself a power of two), longest first:
/// for statements where every row must appear once.
pub(super) fn pow2_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        // The largest power of two not above what is left (and `max`).
        let len = (1usize << rest.len().ilog2()).min(max);
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shapes_are_powers_of_two() {
        assert_eq!([1, 2, 3, 4, 5, 64, 65].map(shape), [1, 2, 4, 4, 8, 64, 128]);
        assert_eq!(shape(0), 1);
    }

    #[test]
    fn padding_repeats_the_last_key() {
        assert_eq!(padded(&[1, 2, 3]).copied().collect::<Vec<_>>(), [1, 2, 3, 3]);
        assert_eq!(padded(&[1, 2]).copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(padded::<u8>(&[]).count(), 0);
        assert_eq!(padded_to(&[1, 2], 4).copied().collect::<Vec<_>>(), [1, 2, 2, 2]);
        assert_eq!(padded_to(&[1, 2, 3], 2).count(), 3);
    }

    #[test]
    fn runs_are_longest_first() {
        let items: Vec<u32> = (0..37).collect();
        let lens: Vec<usize> = pow2_chunks(&items, 16).map(<[u32]>::len).collect();
        assert_eq!(lens, [16, 16, 4, 1]);
        assert_eq!(pow2_chunks::<u8>(&[], 64).count(), 0);
    }

    proptest! {
        #[test]
        fn padding_keeps_the_keys_in_order_and_adds_only_the_last(keys in proptest::collection::vec(any::<u16>(), 1..300)) {
            let out: Vec<u16> = padded(&keys).copied().collect();
            prop_assert_eq!(out.len(), shape(keys.len()));
            prop_assert!(out.len().is_power_of_two());
            prop_assert_eq!(&out[..keys.len()], &keys[..]);
            prop_assert!(out[keys.len()..].iter().all(|k| Some(k) == keys.last()));
        }

        #[test]
        fn runs_cover_every_item_once_in_few_shapes(n in 0usize..2000, max_log in 0u32..8) {
            let max = 1usize << max_log;
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = pow2_chunks(&items, max).collect();
            prop_assert_eq!(runs.concat(), items.clone());
            for run in &runs {
                prop_assert!(run.len().is_power_of_two() && run.len() <= max);
            }
            // Full runs of `max`, then at most one run of each smaller power of two.
            let short = runs.iter().filter(|r| r.len() < max).count();
            prop_assert!(short <= max_log as usize);
        }
    }
}
