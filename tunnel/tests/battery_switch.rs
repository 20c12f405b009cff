//! One battery of switch checks run against the fake switch and against Open vSwitch through
//! `ovs-ofctl`/`ovs-vsctl` (userspace datapath, daemons started by `ovs_kit`), which keeps
//! the fake honest: the same calls must give the same answers and flow dumps.
//!
//! Ranges: the port's pod 10.128.0.13 (OpenShift SDN tags ports with `external_ids:ip`);
//! steered ranges 10.129.0.0/16, 172.31.0.0/16 and fd00:129::/48.

mod ovs_kit;

use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use causeway_tunnel::steering::flows::steering_flows;
use causeway_tunnel::steering::{COOKIE, FakeSwitch, Flow, OvsCli, SteeringPort, Switch};
use ovs_kit::{Ovs, TUN_MAC, pod};

const PORT: &str = "v-bsw";
const OFPORT: u32 = 3;
const POD_IP: &str = "10.128.0.13";
/// A cookie of another owner on the same bridge.
const FOREIGN: u64 = 0x1234;

fn port() -> SteeringPort {
    SteeringPort {
        bridge: "br0".into(),
        ofport: OFPORT,
        mac: TUN_MAC.into(),
    }
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|n| n.parse().unwrap()).collect()
}

/// The battery, on a switch whose bridge `br0` has port [`PORT`] as OpenFlow port
/// [`OFPORT`], tagged with [`POD_IP`].
async fn battery(switch: &dyn Switch) -> Result<()> {
    assert_eq!(switch.ofport(PORT).await?, OFPORT);
    assert!(switch.ofport("v-none").await.is_err(), "no such interface");
    let ip: IpAddr = POD_IP.parse()?;
    assert_eq!(switch.interface_with_ip(ip).await?.as_deref(), Some(PORT));
    assert_eq!(
        switch.interface_with_ip("10.128.0.99".parse()?).await?,
        None
    );

    let foreign = [Flow {
        table: 0,
        priority: 50,
        matches: "arp".into(),
        actions: "NORMAL".into(),
    }];
    switch.replace_flows("br0", FOREIGN, &foreign).await?;
    let theirs = switch.dump_flows("br0", FOREIGN).await?;
    assert_eq!(theirs, ["table=0,priority=50,arp actions=NORMAL"]);

    let flows = steering_flows(
        &port(),
        &nets(&["10.129.0.0/16", "172.31.0.0/16", "fd00:129::/48"]),
    );
    switch.replace_flows("br0", COOKIE, &flows).await?;
    assert_eq!(
        switch.dump_flows("br0", COOKIE).await?.join("\n"),
        "table=0,priority=400,ip,in_port=3,nw_src=10.129.0.0/16 actions=goto_table:30\n\
         table=0,priority=400,ip,in_port=3,nw_src=172.31.0.0/16 actions=goto_table:30\n\
         table=0,priority=400,ipv6,in_port=3,ipv6_src=fd00:129::/48 actions=goto_table:30\n\
         table=30,priority=400,ip,nw_dst=10.129.0.0/16 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3\n\
         table=30,priority=400,ip,nw_dst=172.31.0.0/16 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3\n\
         table=30,priority=400,ipv6,ipv6_dst=fd00:129::/48 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3"
    );
    // Replacing is idempotent, a smaller set replaces the larger, and another owner's flows
    // are never touched.
    switch.replace_flows("br0", COOKIE, &flows).await?;
    assert_eq!(switch.dump_flows("br0", COOKIE).await?.len(), 6);
    let fewer = steering_flows(&port(), &nets(&["10.129.0.0/16"]));
    switch.replace_flows("br0", COOKIE, &fewer).await?;
    assert_eq!(
        switch.dump_flows("br0", COOKIE).await?,
        [
            "table=0,priority=400,ip,in_port=3,nw_src=10.129.0.0/16 actions=goto_table:30",
            "table=30,priority=400,ip,nw_dst=10.129.0.0/16 actions=set_field:02:00:00:00:00:0d->eth_dst,output:3",
        ]
    );
    switch.replace_flows("br0", COOKIE, &[]).await?;
    assert!(switch.dump_flows("br0", COOKIE).await?.is_empty());
    assert_eq!(switch.dump_flows("br0", FOREIGN).await?, theirs);
    Ok(())
}

#[tokio::test]
async fn fake_switch() -> Result<()> {
    let fake = FakeSwitch::with_port(PORT, OFPORT);
    fake.set_port_ip(PORT, POD_IP.parse()?);
    battery(&fake).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_vswitch_through_its_tools() -> Result<()> {
    let ovs = Ovs::start(true)?;
    let _pod = pod(&ovs, "bsw", OFPORT, TUN_MAC, POD_IP)?;
    ovs.tool(
        "ovs-vsctl",
        &[
            "set",
            "Interface",
            PORT,
            &format!("external_ids:ip=\"{POD_IP}\""),
        ],
        None,
    )?;
    let base = ovs.base_flow_count()?;
    let switch = OvsCli {
        rundir: Some(ovs.dir.path().to_path_buf()),
        timeout: Duration::from_secs(10),
    };
    battery(&switch).await?;
    assert_eq!(
        ovs.base_flow_count()?,
        base,
        "the SDN's flows are untouched"
    );
    Ok(())
}
