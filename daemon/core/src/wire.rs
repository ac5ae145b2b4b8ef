//! serde for the proto types carried in [`crate::PeerMsg`] (`mxfs-proto` is not serde).
//! Decoding validates every field and fails with a message naming it; it never panics.

/// `ResourceId` as `(kind: u8, volume, a, b)`; must be well formed.
pub mod resource {
    use mxfs_proto::{ResourceId, ResourceType};
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize as a 4-tuple.
    pub fn serialize<S: Serializer>(r: &ResourceId, s: S) -> Result<S::Ok, S::Error> {
        (r.kind as u8, r.volume, r.a, r.b).serialize(s)
    }
    /// Deserialize and validate.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ResourceId, D::Error> {
        let (kind, volume, a, b) = <(u8, u64, u64, u64)>::deserialize(d)?;
        let kind = ResourceType::from_u8(kind)
            .ok_or_else(|| D::Error::custom(format!("resource: unknown type {kind}")))?;
        let r = ResourceId { kind, volume, a, b };
        if !r.is_well_formed() {
            return Err(D::Error::custom(format!(
                "resource: not well formed: {r:?}"
            )));
        }
        Ok(r)
    }
}

/// `LockMode` as its `u8` number.
pub mod mode {
    use mxfs_proto::LockMode;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize as a `u8`.
    pub fn serialize<S: Serializer>(m: &LockMode, s: S) -> Result<S::Ok, S::Error> {
        (*m as u8).serialize(s)
    }
    /// Deserialize and validate.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LockMode, D::Error> {
        let v = u8::deserialize(d)?;
        LockMode::from_u8(v).ok_or_else(|| D::Error::custom(format!("mode: unknown mode {v}")))
    }
}

/// `Option<LockMode>` as `Option<u8>`.
pub mod opt_mode {
    use mxfs_proto::LockMode;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    /// Serialize as an optional `u8`.
    pub fn serialize<S: Serializer>(m: &Option<LockMode>, s: S) -> Result<S::Ok, S::Error> {
        m.map(|m| m as u8).serialize(s)
    }
    /// Deserialize and validate.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LockMode>, D::Error> {
        match Option::<u8>::deserialize(d)? {
            None => Ok(None),
            Some(v) => LockMode::from_u8(v)
                .map(Some)
                .ok_or_else(|| D::Error::custom(format!("to: unknown mode {v}"))),
        }
    }
}
