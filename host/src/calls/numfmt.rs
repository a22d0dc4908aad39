//! Number formatting for the text log without `core::fmt`: the log has ~10 numbers a line, and
//! `write!` (its argument machinery, padding logic and `Display` dispatch) showed as about a
//! tenth of the converter's profile. The output is the same as `{}`, `{:#x}` and `{:09}`.

/// Appends `v` in decimal.
pub fn push_u64(s: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    // ASCII digits only.
    s.push_str(std::str::from_utf8(&buf[i..]).expect("digits"));
}

/// Appends `v` in decimal, with its sign.
pub fn push_i64(s: &mut String, v: i64) {
    if v < 0 {
        s.push('-');
    }
    push_u64(s, v.unsigned_abs());
}

/// Appends `v` as `0x` and lower-case hex digits (`{:#x}`).
pub fn push_hex(s: &mut String, mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 18];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    i -= 2;
    buf[i] = b'0';
    buf[i + 1] = b'x';
    s.push_str(std::str::from_utf8(&buf[i..]).expect("hex digits"));
}

/// Appends `v` (below 10^9) in exactly nine digits, zero-padded (`{:09}`).
pub fn push_nine(s: &mut String, mut v: u64) {
    let mut buf = [b'0'; 9];
    for d in buf.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    s.push_str(std::str::from_utf8(&buf).expect("digits"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_core_fmt() {
        for v in [0u64, 1, 9, 10, 99, 100, 12345, u32::MAX as u64, u64::MAX] {
            let mut s = String::new();
            push_u64(&mut s, v);
            assert_eq!(s, format!("{v}"));
            s.clear();
            push_hex(&mut s, v);
            assert_eq!(s, format!("{v:#x}"));
        }
        for v in [0i64, -1, 42, i64::MIN, i64::MAX] {
            let mut s = String::new();
            push_i64(&mut s, v);
            assert_eq!(s, format!("{v}"));
        }
        for v in [0u64, 7, 123_456_789, 999_999_999] {
            let mut s = String::new();
            push_nine(&mut s, v);
            assert_eq!(s, format!("{v:09}"));
        }
    }
}
