//! Mode lattice helpers over the DLM compatibility matrix.

use crate::LockMode;

/// Whether holding `held` lets a local user have `want`: every mode compatible with `held` is
/// compatible with `want` (the compatibility set of `held` is a subset of `want`'s).
pub(crate) fn covers(held: LockMode, want: LockMode) -> bool {
    COVERS[held as usize][want as usize]
}

/// `covers` for every pair, computed at compile time from the compatibility matrix.
const COVERS: [[bool; 6]; 6] = {
    let mut t = [[false; 6]; 6];
    let mut h = 0;
    while h < 6 {
        let mut w = 0;
        while w < 6 {
            let mut ok = true;
            let mut x = 0;
            while x < 6 {
                let (hm, wm, xm) = (LockMode::ALL[h], LockMode::ALL[w], LockMode::ALL[x]);
                if hm.compatible(xm) && !wm.compatible(xm) {
                    ok = false;
                }
                x += 1;
            }
            t[h][w] = ok;
            w += 1;
        }
        h += 1;
    }
    t
};

/// The weakest mode that covers both `a` and `b` (e.g. `sup(CW, PR) = PW`).
pub(crate) fn sup(a: LockMode, b: LockMode) -> LockMode {
    for m in LockMode::ALL {
        if covers(m, a) && covers(m, b) {
            return m;
        }
    }
    LockMode::Ex
}

/// Whether `to` weakens a write mode to a non-write one (a data version step).
pub(crate) fn gives_up_write(from: LockMode, to: Option<LockMode>) -> bool {
    from.is_write() && !to.is_some_and(|m| m.is_write())
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::*;

    #[test]
    fn covers_table_matches_definition() {
        for h in LockMode::ALL {
            for w in LockMode::ALL {
                let def = LockMode::ALL
                    .iter()
                    .all(|x| !h.compatible(*x) || w.compatible(*x));
                assert_eq!(covers(h, w), def, "{h:?} {w:?}");
            }
        }
    }

    #[test]
    fn lattice() {
        assert!(covers(Ex, Nl) && covers(Ex, Pr) && covers(Pw, Cw) && covers(Pw, Pr));
        assert!(!covers(Cw, Pr) && !covers(Pr, Cw) && !covers(Pr, Pw) && !covers(Nl, Cr));
        for m in LockMode::ALL {
            assert!(covers(m, m));
            assert!(covers(Ex, m));
            assert!(covers(m, Nl));
        }
        assert_eq!(sup(Cw, Pr), Pw);
        assert_eq!(sup(Cr, Pr), Pr);
        assert_eq!(sup(Nl, Cr), Cr);
        assert_eq!(sup(Pw, Ex), Ex);
        assert_eq!(sup(Cr, Cw), Cw);
        assert!(gives_up_write(Ex, None) && gives_up_write(Pw, Some(Pr)));
        assert!(!gives_up_write(Ex, Some(Pw)) && !gives_up_write(Pr, None));
    }
}
