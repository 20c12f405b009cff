//! One battery of MSS-clamp checks run against the fake `nft` and against the kernel's
//! nftables in a network namespace (through `nft -f`), which keeps the fake honest: both
//! must list the same ruleset after each step.
//!
//! No addresses: the ruleset matches interface names only (`causeway0`, `cw-new0`).

use std::sync::Arc;

use anyhow::Result;
use causeway_tests::netns::Netns;
use causeway_tunnel::fakenft::FakeNft;
use causeway_tunnel::mss::{MssClamp, Nft, NftCli};

/// What both list once our table clamps `interface` (created after the foreign table, so
/// listed after it).
fn listing(interface: &str) -> String {
    let rule = format!(
        "oifname \"{interface}\" tcp flags syn / syn,rst tcp option maxseg size set rt mtu"
    );
    format!(
        "table inet other {{\n}}\n\
         table inet causeway_tunnel {{\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority mangle; policy accept;\n\
         \t\t{rule}\n\
         \t}}\n\
         \n\
         \tchain output {{\n\
         \t\ttype filter hook output priority mangle; policy accept;\n\
         \t\t{rule}\n\
         \t}}\n\
         }}\n"
    )
}

/// The battery: `nft` applies, `list` reads the whole ruleset back.
async fn battery(nft: Arc<dyn Nft>, list: impl Fn() -> Result<String>) -> Result<()> {
    assert_eq!(list()?, "", "an empty ruleset to start with");
    nft.apply("table inet other {\n}\n").await?;
    let clamp = MssClamp::new(nft.clone());

    clamp.sync("causeway0", false).await?;
    assert_eq!(list()?, listing("causeway0"));
    // A full resync replaces the table whole: nothing doubles.
    clamp.sync("causeway0", true).await?;
    assert_eq!(list()?, listing("causeway0"));
    clamp.sync("cw-new0", false).await?;
    assert_eq!(list()?, listing("cw-new0"));

    // A text that fails half-way changes nothing (one transaction).
    let failed = nft
        .apply("add table inet causeway_tunnel\ndelete table inet causeway_tunnel\ndelete table inet missing\n")
        .await;
    assert!(failed.is_err(), "deleting a missing table is refused");
    assert_eq!(list()?, listing("cw-new0"), "the failed text left no trace");

    // Removal takes our table only, and is idempotent.
    clamp.remove().await?;
    assert_eq!(list()?, "table inet other {\n}\n");
    clamp.remove().await?;
    assert_eq!(list()?, "table inet other {\n}\n");
    Ok(())
}

#[tokio::test]
async fn fake_nft() -> Result<()> {
    let fake = Arc::new(FakeNft::default());
    let dump = fake.clone();
    battery(fake.clone(), move || Ok(dump.dump())).await?;
    assert_eq!(fake.applied().len(), 7, "every text is recorded");
    Ok(())
}

#[tokio::test]
async fn kernel_nftables_in_a_namespace() -> Result<()> {
    let ns = Netns::new("nft")?;
    let nft = Arc::new(NftCli {
        netns: Some(ns.name().to_string()),
        ..NftCli::default()
    });
    let list = || ns.exec("nft", &["list", "ruleset"]);
    battery(nft, list).await
}
