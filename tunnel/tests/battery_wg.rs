//! The WireGuard device battery (`wg_battery`) against the fake and against our userspace
//! backend on a TUN device inside a network namespace. The kernel backend runs the same
//! battery inside the kernel VM (`wg_kernel`).

mod wg_battery;

use anyhow::Result;
use causeway_tests::netns::Netns;
use causeway_tunnel::fakewg::FakeWg;

#[tokio::test]
async fn fake_device() -> Result<()> {
    let fake = FakeWg::new("cwb0");
    wg_battery::battery(&fake, "cwb0").await?;
    assert_eq!(fake.configures(), 5);
    Ok(())
}

#[test]
fn userspace_device_in_a_namespace() -> Result<()> {
    let ns = Netns::new("wgb")?;
    let wg = wg_battery::userspace_device(&ns, "cwb0")?;
    wg_battery::runtime()?.block_on(wg_battery::battery(&wg, "cwb0"))?;
    assert!(
        ns.exec("ip", &["link", "show", "cwb0"])?.contains("cwb0"),
        "the TUN device lives in the namespace"
    );
    Ok(())
}
