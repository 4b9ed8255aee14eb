//! A few DER encoders for the certificate extensions rcgen does not build itself
//! (authority information access, certificate policies).

/// Encodes a tag-length-value triple with a definite length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Encodes a SEQUENCE of already encoded elements.
pub(crate) fn sequence(elements: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &elements.concat())
}

/// Encodes an OBJECT IDENTIFIER; `None` when the arcs do not form a valid OID.
pub(crate) fn oid(arcs: &[u64]) -> Option<Vec<u8>> {
    let (&first, rest) = arcs.split_first()?;
    let (&second, rest) = rest.split_first()?;
    if first > 2 || (first < 2 && second >= 40) {
        return None;
    }
    let mut content = Vec::new();
    push_base128(&mut content, first.checked_mul(40)?.checked_add(second)?);
    for &arc in rest {
        push_base128(&mut content, arc);
    }
    Some(tlv(0x06, &content))
}

fn push_base128(out: &mut Vec<u8>, mut value: u64) {
    let mut groups = [0u8; 10];
    let mut n = 0;
    loop {
        groups[n] = (value & 0x7f) as u8;
        n += 1;
        value >>= 7;
        if value == 0 {
            break;
        }
    }
    for i in (0..n).rev() {
        let continuation = if i == 0 { 0 } else { 0x80 };
        out.push(groups[i] | continuation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_oids() {
        // id-pe-authorityInfoAccess 1.3.6.1.5.5.7.1.1
        assert_eq!(
            oid(&[1, 3, 6, 1, 5, 5, 7, 1, 1]).unwrap(),
            [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x01]
        );
        // 1.2.840.113549 (RSA Data Security) has multi-byte arcs
        assert_eq!(
            oid(&[1, 2, 840, 113_549]).unwrap(),
            [0x06, 0x06, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]
        );
        assert!(oid(&[3, 1]).is_none());
        assert!(oid(&[1]).is_none());
    }

    #[test]
    fn encodes_long_lengths() {
        let content = vec![0u8; 300];
        let encoded = tlv(0x04, &content);
        assert_eq!(&encoded[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(encoded.len(), 304);
    }
}
