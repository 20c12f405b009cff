//! Reading nf_tables objects back: tables, and the chains, sets and rules of one table,
//! through `NFT_MSG_GET…` dumps, parsed as far as a program reading back its own tables
//! needs (names, a rule's comment and counter). `nft -j list table` gives the same at
//! 10,000 services in seconds, most of them spent printing JSON; a dump takes the
//! kernel's share only.

use crate::error::NfnlError;
use crate::parse::{attributes, c_string, string_attr};
use crate::socket::NfSocket;

const GETTABLE: u16 = 1;
const GETCHAIN: u16 = 4;
const GETRULE: u16 = 7;
const GETSET: u16 = 10;

/// What a rule dump tells about one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListedRule {
    pub chain: String,
    /// The `comment` (user data record 0).
    pub comment: Option<String>,
    /// Packets of the rule's first `counter` expression.
    pub packets: Option<u64>,
}

impl NfSocket {
    /// Every nf_tables table of the namespace: `(family, name)` (`NFT_MSG_GETTABLE` dump;
    /// tables only, so cheap however many rules they hold).
    pub fn tables(&mut self) -> Result<Vec<(u8, String)>, NfnlError> {
        let mut out = Vec::new();
        self.dump(
            GETTABLE,
            0,
            |_| {},
            |family, attrs| {
                if let Some(name) = string_attr(attrs, 1) {
                    out.push((family, name));
                }
            },
        )?;
        Ok(out)
    }

    /// Every chain of `family`: `(table, chain)`. Chain dumps take no table filter, so
    /// one dump serves every table.
    pub fn chains(&mut self, family: u8) -> Result<Vec<(String, String)>, NfnlError> {
        let mut out = Vec::new();
        self.dump(
            GETCHAIN,
            family,
            |_| {},
            |_, attrs| {
                // NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME
                if let (Some(table), Some(name)) = (string_attr(attrs, 1), string_attr(attrs, 3)) {
                    out.push((table, name));
                }
            },
        )?;
        Ok(out)
    }

    /// Names of the named sets and maps of table `table` of `family` (not the anonymous
    /// `__set%d` / `__map%d` ones, which belong to a rule).
    pub fn sets(&mut self, family: u8, table: &str) -> Result<Vec<String>, NfnlError> {
        self.table_dump(GETSET, family, table, |attrs| {
            string_attr(attrs, 2).filter(|name| !name.starts_with("__")) // NFTA_SET_NAME
        })
    }

    /// The rules of table `table` of `family`, in chain order.
    pub fn rules(&mut self, family: u8, table: &str) -> Result<Vec<ListedRule>, NfnlError> {
        self.table_dump(GETRULE, family, table, |attrs| Some(parse_rule(attrs)))
    }

    /// A dump filtered by table (attribute 1 of both the request and each answer, for
    /// sets and rules), each answer parsed by `parse`.
    fn table_dump<T>(
        &mut self,
        msg: u16,
        family: u8,
        table: &str,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<T>, NfnlError> {
        let mut out = Vec::new();
        self.dump(
            msg,
            family,
            |b| b.put_str(1, table),
            |_, attrs| {
                if string_attr(attrs, 1).as_deref() == Some(table)
                    && let Some(item) = parse(attrs)
                {
                    out.push(item);
                }
            },
        )?;
        Ok(out)
    }
}

/// A rule's chain, comment and first counter.
fn parse_rule(attrs: &[u8]) -> ListedRule {
    let mut rule = ListedRule::default();
    for (kind, value) in attributes(attrs) {
        match kind {
            2 => rule.chain = c_string(value), // NFTA_RULE_CHAIN
            4 => {
                // NFTA_RULE_EXPRESSIONS: NFTA_LIST_ELEM { NFTA_EXPR_NAME, NFTA_EXPR_DATA }
                for (_, expr) in attributes(value) {
                    if rule.packets.is_some() {
                        break;
                    }
                    let mut name = None;
                    let mut data: &[u8] = &[];
                    for (k, v) in attributes(expr) {
                        match k {
                            1 => name = Some(c_string(v)),
                            2 => data = v,
                            _ => {}
                        }
                    }
                    if name.as_deref() == Some("counter") {
                        rule.packets = attributes(data)
                            .find(|(k, v)| *k == 2 && v.len() == 8) // NFTA_COUNTER_PACKETS
                            .map(|(_, v)| u64::from_be_bytes(v.try_into().unwrap()));
                    }
                }
            }
            7 => rule.comment = comment(value), // NFTA_RULE_USERDATA
            _ => {}
        }
    }
    rule
}

/// The comment record of a rule's user data: type-length-value records, the comment
/// being type 0 (NUL-terminated).
fn comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (kind, len) = (udata[0], udata[1] as usize);
        let value = udata.get(2..2 + len)?;
        if kind == 0 {
            return Some(c_string(value));
        }
        udata = &udata[2 + len..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Buffer;

    #[test]
    fn a_rule_reads_as_its_chain_comment_and_first_counter() {
        let mut b = Buffer::default();
        b.put_str(1, "causeway-3");
        b.put_str(2, "svc-x");
        b.begin_nest(4);
        for (name, packets) in [
            ("numgen", None),
            ("counter", Some(42u64)),
            ("counter", Some(7)),
        ] {
            b.begin_nest(1);
            b.put_str(1, name);
            b.begin_nest(2);
            if let Some(p) = packets {
                b.put(1, &(p * 60).to_be_bytes());
                b.put(2, &p.to_be_bytes());
            }
            b.end_nest();
            b.end_nest();
        }
        b.end_nest();
        let mut udata = vec![0u8, 6];
        udata.extend_from_slice(b"cw:ep\0");
        b.put(7, &udata);
        let rule = parse_rule(b.bytes());
        assert_eq!(
            rule,
            ListedRule {
                chain: "svc-x".into(),
                comment: Some("cw:ep".into()),
                packets: Some(42),
            }
        );
    }

    #[test]
    fn a_rule_without_counter_or_comment_has_none() {
        let mut b = Buffer::default();
        b.put_str(2, "services");
        b.put(7, &[1u8, 2, 9]); // a record of another type, cut short
        assert_eq!(
            parse_rule(b.bytes()),
            ListedRule {
                chain: "services".into(),
                ..Default::default()
            }
        );
    }
}
