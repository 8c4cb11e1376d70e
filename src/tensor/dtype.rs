//! `DataType`: the one table that maps KServe V2 datatype names, Triton config names and
//! element sizes onto each other (`runtime` maps it to ONNX Runtime's element types).

/// Element types mlpserve can carry end to end (KServe V2 names in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
    /// Byte strings (ONNX `string`): KServe `BYTES`, Triton `TYPE_STRING`. Elements have no
    /// fixed size; on the wire each is a 4-byte little-endian length and its bytes.
    Bytes,
}

/// (variant, KServe name, Triton config name, bytes per element when fixed)
const TABLE: [(DataType, &str, &str, Option<usize>); 14] = [
    (DataType::Bool, "BOOL", "TYPE_BOOL", Some(1)),
    (DataType::U8, "UINT8", "TYPE_UINT8", Some(1)),
    (DataType::U16, "UINT16", "TYPE_UINT16", Some(2)),
    (DataType::U32, "UINT32", "TYPE_UINT32", Some(4)),
    (DataType::U64, "UINT64", "TYPE_UINT64", Some(8)),
    (DataType::I8, "INT8", "TYPE_INT8", Some(1)),
    (DataType::I16, "INT16", "TYPE_INT16", Some(2)),
    (DataType::I32, "INT32", "TYPE_INT32", Some(4)),
    (DataType::I64, "INT64", "TYPE_INT64", Some(8)),
    (DataType::F16, "FP16", "TYPE_FP16", Some(2)),
    (DataType::BF16, "BF16", "TYPE_BF16", Some(2)),
    (DataType::F32, "FP32", "TYPE_FP32", Some(4)),
    (DataType::F64, "FP64", "TYPE_FP64", Some(8)),
    (DataType::Bytes, "BYTES", "TYPE_STRING", None),
];

impl DataType {
    fn row(self) -> &'static (DataType, &'static str, &'static str, Option<usize>) {
        // Every variant has exactly one row in TABLE.
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every DataType is in TABLE")
    }

    /// The KServe V2 / Open Inference Protocol name, e.g. `FP32`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The Triton model-config name, e.g. `TYPE_FP32`.
    pub fn triton_name(self) -> &'static str {
        self.row().2
    }

    /// Bytes per element in the binary (little-endian, row-major) encoding; `None` for
    /// [`DataType::Bytes`], whose elements each carry their own length.
    pub fn fixed_size(self) -> Option<usize> {
        self.row().3
    }

    /// Parses a KServe V2 name; `None` for names we do not serve.
    pub fn from_name(name: &str) -> Option<DataType> {
        TABLE.iter().find(|r| r.1 == name).map(|r| r.0)
    }

    /// Every datatype, in table order.
    pub fn all() -> impl Iterator<Item = DataType> {
        TABLE.iter().map(|r| r.0)
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for dt in DataType::all() {
            assert_eq!(DataType::from_name(dt.name()), Some(dt));
            assert!(
                dt.triton_name().ends_with(dt.name())
                    || matches!(dt, DataType::Bool | DataType::Bytes)
            );
            assert_eq!(dt.fixed_size().is_none(), dt == DataType::Bytes);
        }
        assert_eq!(DataType::from_name("BYTES"), Some(DataType::Bytes));
        assert_eq!(DataType::Bytes.triton_name(), "TYPE_STRING");
        assert_eq!(DataType::from_name("STRING"), None);
        assert_eq!(DataType::F32.fixed_size(), Some(4));
    }
}
