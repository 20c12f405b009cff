//! nf_tables data attributes shared by objects and expressions: list elements, plain
//! values and verdicts (`NFTA_DATA_*`, `linux/netfilter/nf_tables.h`).

use crate::msg::Buffer;

/// `NFTA_LIST_ELEM`: one item of a list attribute (an expression, a set element).
pub(crate) const NFTA_LIST_ELEM: u16 = 1;
/// `NFTA_DATA_VALUE`: a plain value.
pub(crate) const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFTA_VERDICT_CHAIN: u16 = 2;

/// `NFT_RETURN`, `NFT_GOTO`, `NFT_JUMP`: the verdicts that name (or leave) a chain.
pub(crate) const NFT_RETURN: i32 = -5;
pub(crate) const NFT_GOTO: i32 = -4;
pub(crate) const NFT_JUMP: i32 = -3;

/// `NFTA_DATA_VERDICT { code, [chain] }`.
pub(crate) fn verdict(b: &mut Buffer, code: i32, chain: Option<&str>) {
    b.begin_nest(NFTA_DATA_VERDICT);
    b.put_be32(NFTA_VERDICT_CODE, code as u32);
    if let Some(c) = chain {
        b.put_str(NFTA_VERDICT_CHAIN, c);
    }
    b.end_nest();
}

/// A nested `NFTA_DATA_VALUE` under attribute `kind`.
pub(crate) fn value(b: &mut Buffer, kind: u16, data: &[u8]) {
    b.begin_nest(kind);
    b.put(NFTA_DATA_VALUE, data);
    b.end_nest();
}
