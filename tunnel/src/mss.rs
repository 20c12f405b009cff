//! MSS clamping on the tunnel interface: an nftables table of our own, replaced whole by one
//! `nft -f` transaction.
//!
//! The tunnel's MTU (default 1380) is below the pods' (1500, or the SDN's 1450): a TCP peer
//! that believes the path takes 1460-byte segments sends packets the tunnel must drop, and
//! ICMP "fragmentation needed" is often filtered on the way back, so the connection
//! black-holes. Rewriting the MSS option of SYNs leaving through the tunnel to the route MTU
//! (`rt mtu`) makes both ends pick segments that fit.

use std::time::Duration;

use causeway_shared::tool::{Tool, ToolError};

/// Family and name of our table.
pub const TABLE: &str = "inet causeway_tunnel";

/// Errors of applying the ruleset.
#[derive(Debug, thiserror::Error)]
pub enum MssError {
    /// `nft -f -` could not be started, did not finish in time, or rejected the ruleset
    /// ([`ToolError::Failed`], with nft's own message).
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// The whole ruleset for `interface`, as one transaction: the table is created if missing
/// (so the delete cannot fail), deleted, and written again.
pub fn ruleset(interface: &str) -> String {
    // nft 1.0.6 has no `destroy`; `add` + `delete` is the idempotent idiom.
    let rule = format!(
        "oifname \"{interface}\" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu"
    );
    format!(
        "add table {TABLE}\n\
         delete table {TABLE}\n\
         table {TABLE} {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\t{rule}\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority mangle; policy accept;\n\
         \t\t{rule}\n\
         \t}}\n\
         }}\n"
    )
}

/// Text that removes our table (clean shutdown).
pub fn removal() -> String {
    format!("add table {TABLE}\ndelete table {TABLE}\n")
}

/// Applies nftables text.
#[async_trait::async_trait]
pub trait Nft: Send + Sync {
    async fn apply(&self, text: &str) -> Result<(), MssError>;
}

/// [`Nft`] through `nft -f -` (run by the shared [`Tool`] runner), optionally inside a named
/// network namespace (`ip netns exec NAME nft -f -`, used by the namespace tests).
#[derive(Clone, Debug)]
pub struct NftCli {
    pub netns: Option<String>,
    pub timeout: Duration,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            netns: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl NftCli {
    fn tool(&self) -> Tool {
        match &self.netns {
            Some(ns) => Tool::in_netns("nft", ns),
            None => Tool::new("nft"),
        }
        .with_timeout(self.timeout)
    }
}

#[async_trait::async_trait]
impl Nft for NftCli {
    async fn apply(&self, text: &str) -> Result<(), MssError> {
        self.tool().run(&["-f", "-"], Some(text)).await?;
        Ok(())
    }
}

/// Keeps the clamp for one interface, applying only when it changes (or on a full sync).
pub struct MssClamp {
    nft: std::sync::Arc<dyn Nft>,
    applied: tokio::sync::Mutex<Option<String>>,
}

impl MssClamp {
    pub fn new(nft: std::sync::Arc<dyn Nft>) -> Self {
        Self {
            nft,
            applied: tokio::sync::Mutex::new(None),
        }
    }

    /// Installs the clamp for `interface`; `full` reapplies even when unchanged.
    pub async fn sync(&self, interface: &str, full: bool) -> Result<(), MssError> {
        let text = ruleset(interface);
        let mut applied = self.applied.lock().await;
        if !full && applied.as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        *applied = None;
        self.nft.apply(&text).await?;
        *applied = Some(text);
        Ok(())
    }

    /// Removes our table.
    pub async fn remove(&self) -> Result<(), MssError> {
        *self.applied.lock().await = None;
        self.nft.apply(&removal()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakenft::FakeNft;

    #[test]
    fn ruleset_golden() {
        assert_eq!(
            ruleset("causeway0"),
            "add table inet causeway_tunnel\n\
             delete table inet causeway_tunnel\n\
             table inet causeway_tunnel {\n\
             \tchain forward {\n\
             \t\ttype filter hook forward priority mangle; policy accept;\n\
             \t\toifname \"causeway0\" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu\n\
             \t}\n\
             \tchain output {\n\
             \t\ttype filter hook output priority mangle; policy accept;\n\
             \t\toifname \"causeway0\" tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu\n\
             \t}\n\
             }\n"
        );
    }

    #[tokio::test]
    async fn applies_only_on_change_or_full_sync() {
        let fake = std::sync::Arc::new(FakeNft::default());
        let clamp = MssClamp::new(fake.clone());
        clamp.sync("causeway0", false).await.unwrap();
        clamp.sync("causeway0", false).await.unwrap();
        assert_eq!(fake.applied().len(), 1);
        clamp.sync("causeway0", true).await.unwrap();
        assert_eq!(fake.applied().len(), 2);
        clamp.remove().await.unwrap();
        assert_eq!(fake.applied().last().unwrap(), &removal());
    }
}
