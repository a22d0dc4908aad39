//! The value types a probe field can have, and how each is read and decoded.

use std::fmt;
use std::str::FromStr;

/// The type of a probe argument, output or return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    /// A size in bytes.
    Size,
    /// An opaque handle or data pointer (shown in hex).
    Ptr,
    /// A code address (symbolized offline).
    Code,
    Bool,
    /// IEEE floats, e.g. an output `float*` (bpftrace reads their bits as integers).
    F32,
    F64,
    /// CUDA/HIP `dim3` passed by value: 12 bytes in two argument registers on x86-64
    /// (`x | y << 32`, then `z`).
    Dim3,
}

impl FieldType {
    pub const ALL: [FieldType; 15] = [
        FieldType::I8,
        FieldType::U8,
        FieldType::I16,
        FieldType::U16,
        FieldType::I32,
        FieldType::U32,
        FieldType::I64,
        FieldType::U64,
        FieldType::Size,
        FieldType::Ptr,
        FieldType::Code,
        FieldType::Bool,
        FieldType::F32,
        FieldType::F64,
        FieldType::Dim3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FieldType::I8 => "i8",
            FieldType::U8 => "u8",
            FieldType::I16 => "i16",
            FieldType::U16 => "u16",
            FieldType::I32 => "i32",
            FieldType::U32 => "u32",
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::Size => "size",
            FieldType::Ptr => "ptr",
            FieldType::Code => "code",
            FieldType::Bool => "bool",
            FieldType::F32 => "f32",
            FieldType::F64 => "f64",
            FieldType::Dim3 => "dim3",
        }
    }

    /// How many argument slots (registers or stack words) the type takes.
    pub fn slots(self) -> usize {
        match self {
            FieldType::Dim3 => 2,
            _ => 1,
        }
    }

    /// Width in bits of the value, which the parser truncates to (bpftrace prints registers whole).
    pub fn bits(self) -> u32 {
        match self {
            FieldType::I8 | FieldType::U8 | FieldType::Bool => 8,
            FieldType::I16 | FieldType::U16 => 16,
            FieldType::I32 | FieldType::U32 | FieldType::F32 => 32,
            _ => 64,
        }
    }

    pub fn signed(self) -> bool {
        matches!(
            self,
            FieldType::I8 | FieldType::I16 | FieldType::I32 | FieldType::I64
        )
    }

    /// Whether an `enum` table may name its values: an integer's, or a handle's special values
    /// (`ptr`: hipStreamPerThread is the stream `(hipStream_t)2`; other handles show as hex).
    pub fn takes_enum(self) -> bool {
        self.is_integer() || self == FieldType::Ptr
    }

    /// Whether the type is an integer (signed, unsigned or a size).
    pub fn is_integer(self) -> bool {
        !matches!(
            self,
            FieldType::Ptr
                | FieldType::Code
                | FieldType::Bool
                | FieldType::Dim3
                | FieldType::F32
                | FieldType::F64
        )
    }

    /// The bpftrace pointee type used to read an output parameter of this type after return.
    pub fn bpftrace_pointee(self) -> Option<&'static str> {
        Some(match self {
            FieldType::I8 => "int8",
            FieldType::U8 | FieldType::Bool => "uint8",
            FieldType::I16 => "int16",
            FieldType::U16 => "uint16",
            FieldType::I32 => "int32",
            FieldType::U32 | FieldType::F32 => "uint32",
            FieldType::I64 => "int64",
            FieldType::U64
            | FieldType::Size
            | FieldType::Ptr
            | FieldType::Code
            | FieldType::F64 => "uint64",
            FieldType::Dim3 => return None,
        })
    }

    /// Truncates a raw 64-bit word to the type's width, sign-extending signed types.
    pub fn normalize(self, raw: u64) -> u64 {
        let bits = self.bits();
        if bits == 64 {
            return raw;
        }
        let masked = raw & ((1u64 << bits) - 1);
        if self.signed() && masked >> (bits - 1) & 1 == 1 {
            masked | !((1u64 << bits) - 1)
        } else {
            masked
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FieldType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FieldType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = FieldType::ALL.iter().map(|t| t.name()).collect();
                format!("unknown type {s:?}; expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::FieldType;

    #[test]
    fn normalizes_by_width_and_sign() {
        assert_eq!(FieldType::I32.normalize(0xffff_fffb) as i64, -5);
        assert_eq!(FieldType::I32.normalize(0xdead_0000_0000_0064), 100);
        assert_eq!(FieldType::U32.normalize(0xffff_fffb), 0xffff_fffb);
        assert_eq!(FieldType::I8.normalize(0x80) as i64, -128);
        assert_eq!(FieldType::U64.normalize(u64::MAX), u64::MAX);
    }

    #[test]
    fn names_round_trip() {
        for t in FieldType::ALL {
            assert_eq!(t.name().parse::<FieldType>().unwrap(), t);
        }
        assert!("float"
            .parse::<FieldType>()
            .unwrap_err()
            .contains("expected one of"));
    }
}
