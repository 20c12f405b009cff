//! An [`Nft`] in memory that keeps the tables the applied texts leave, for tests of the
//! control plane and, through the battery in `tests/battery_nft.rs`, compared with what the
//! kernel lists for the same texts.
//!
//! It understands the part of nft's language the tunnel writes: `add table`, `delete table`
//! and `table F N { chain C { statements } }` blocks. Each text is one transaction, as with
//! `nft -f`: a line it does not understand, or the deletion of a missing table, rejects the
//! whole text and changes nothing. [`FakeNft::dump`] prints the tables as `nft list ruleset`
//! (nft 1.0.6) prints them: in creation order, chains separated by an empty line, and the
//! flag match in nft's `flags / mask` form.

use std::sync::Mutex;

use causeway_shared::tool::ToolError;

use crate::mss::{MssError, Nft};

/// The fake `nft`.
#[derive(Debug, Default)]
pub struct FakeNft {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    applied: Vec<String>,
    tables: Tables,
}

/// `family name` → chains, in creation order (as the kernel lists them).
type Tables = Vec<(String, Vec<Chain>)>;

#[derive(Clone, Debug)]
struct Chain {
    name: String,
    statements: Vec<String>,
}

/// How nft lists a match it was given in another form.
const LISTED_AS: &[(&str, &str)] = &[("tcp flags & (syn | rst) == syn", "tcp flags syn / syn,rst")];

impl FakeNft {
    fn st(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every text applied so far, the rejected ones included.
    pub fn applied(&self) -> Vec<String> {
        self.st().applied.clone()
    }

    /// The tables as `nft list ruleset` prints them.
    pub fn dump(&self) -> String {
        let st = self.st();
        let mut out = String::new();
        for (table, chains) in &st.tables {
            out.push_str(&format!("table {table} {{\n"));
            for (i, chain) in chains.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&format!("\tchain {} {{\n", chain.name));
                for s in &chain.statements {
                    out.push_str(&format!("\t\t{s}\n"));
                }
                out.push_str("\t}\n");
            }
            out.push_str("}\n");
        }
        out
    }
}

/// Applies `text` to a copy of `tables`; the copy, or nft's kind of complaint.
fn transaction(tables: &Tables, text: &str) -> Result<Tables, String> {
    let mut next = tables.clone();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("add table ") {
            table(&mut next, name);
        } else if let Some(name) = line.strip_prefix("delete table ") {
            let before = next.len();
            next.retain(|(t, _)| t != name);
            if next.len() == before {
                return Err(format!("{line}: No such file or directory"));
            }
        } else if let Some(name) = line
            .strip_prefix("table ")
            .and_then(|l| l.strip_suffix(" {"))
        {
            let chains = table(&mut next, name);
            block(chains, &mut lines)?;
        } else {
            return Err(format!("syntax error: {line}"));
        }
    }
    Ok(next)
}

/// The chains of table `name`, created (last) when missing.
fn table<'a>(tables: &'a mut Tables, name: &str) -> &'a mut Vec<Chain> {
    let at = match tables.iter().position(|(t, _)| t == name) {
        Some(at) => at,
        None => {
            tables.push((name.to_string(), Vec::new()));
            tables.len() - 1
        }
    };
    &mut tables[at].1
}

/// The chains of one `table … {` block, up to its closing brace.
fn block<'a>(
    chains: &mut Vec<Chain>,
    lines: &mut impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    while let Some(line) = lines.next() {
        if line == "}" {
            return Ok(());
        }
        let Some(name) = line
            .strip_prefix("chain ")
            .and_then(|l| l.strip_suffix(" {"))
        else {
            return Err(format!("syntax error: {line}"));
        };
        if chains.iter().any(|c| c.name == name) {
            return Err(format!("chain {name}: File exists"));
        }
        let mut statements = Vec::new();
        loop {
            match lines.next() {
                Some("}") => break,
                Some(s) => statements.push(
                    LISTED_AS
                        .iter()
                        .fold(s.to_string(), |s, (given, listed)| s.replace(given, listed)),
                ),
                None => return Err(format!("chain {name}: unexpected end of input")),
            }
        }
        chains.push(Chain {
            name: name.to_string(),
            statements,
        });
    }
    Err("table: unexpected end of input".into())
}

#[async_trait::async_trait]
impl Nft for FakeNft {
    async fn apply(&self, text: &str) -> Result<(), MssError> {
        let mut st = self.st();
        st.applied.push(text.to_string());
        // Refused the way the real `nft -f -` is.
        let next = transaction(&st.tables, text).map_err(|stderr| ToolError::Failed {
            program: "nft".into(),
            args: "-f -".into(),
            status: "exit status: 1".into(),
            stderr,
        })?;
        st.tables = next;
        Ok(())
    }
}
