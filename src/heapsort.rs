//! A heapsort for the few places usher sorts: std's sorts cost kilobytes
//! of code per element type, this one a few hundred bytes, and its time is
//! bounded whatever the input (n log n, no allocation).

/// Sorts `v` in place, ascending; equal elements in no particular order.
pub fn sort<T: Ord>(v: &mut [T]) {
    for root in (0..v.len() / 2).rev() {
        sift(v, root);
    }
    for end in (1..v.len()).rev() {
        v.swap(0, end);
        sift(&mut v[..end], 0);
    }
}

/// Moves `v[root]` down until neither child is greater.
fn sift<T: Ord>(v: &mut [T], mut root: usize) {
    loop {
        let mut child = 2 * root + 1;
        if child + 1 < v.len() && v[child] < v[child + 1] {
            child += 1;
        }
        if child >= v.len() || v[root] >= v[child] {
            return;
        }
        v.swap(root, child);
        root = child;
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    proptest::proptest! {
        #[test]
        fn sorts_like_std(mut v in proptest::collection::vec(0u8..8, 0..200)) {
            let mut want = v.clone();
            want.sort();
            super::sort(&mut v);
            proptest::prop_assert_eq!(v, want);
        }

        #[test]
        fn sorts_tuples_by_their_first_field_first(
            mut v in proptest::collection::vec((0u8..4, 0u64..4), 0..100)
        ) {
            let mut want: Vec<_> = v.clone();
            want.sort();
            super::sort(&mut v);
            proptest::prop_assert_eq!(v, want);
        }
    }
}
