//! The steering flows on Open vSwitch's KERNEL datapath. This host's kernel has no openvswitch
//! module, so the test boots Debian's stock kernel with `tests/lab/kernel-vm.sh` and runs
//! itself inside: on the host (`CAUSEWAY_KERNEL_VM` unset) it launches
//! the VM with this test binary shared over 9p and asserts the run inside succeeded; inside
//! (`CAUSEWAY_KERNEL_VM=1`) it starts our own ovsdb-server/ovs-vswitchd with
//! `datapath_type=system`, installs the flows through [`OvsCli`], pings through them, restarts
//! ovs-vswitchd, checks the recheck restores them, and removes them.
//! Set `CAUSEWAY_KERNEL_VM_SCRIPT` to use another copy of the script.
//!
//! The VM is freshly booted: ovs_kit waits until it has been up 11 s before starting
//! ovs-vswitchd, whose CPU count (and so its number of upcall handlers) is 0 before 10 s
//! (see `OVS_CPU_COUNT_VALID_AFTER` in ovs_kit).
//!
//! Ranges as in ovs_steering: local pods 10.128.0.0/24, remote pods 10.129.0.0/16 (10.129.0.7
//! answers in the tunnel pod), remote services 172.31.0.0/16.

mod ovs_kit;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use causeway_tests::kernel_vm;
use causeway_tests::netns::{fails_to_ping, ping};
use causeway_tunnel::steering::flows::steering_flows;
use causeway_tunnel::steering::{OvsCli, Steering};
use ovs_kit::{Ovs, TUN_MAC, pod};

const TEST: &str = "kernel_datapath_steering";

#[test]
fn kernel_datapath_steering() -> Result<()> {
    kernel_vm::test(TEST, 600, inside_vm)
}

/// The guest runs under software emulation on a shared host: the first packets of a flow
/// go up to ovs-vswitchd, which can take many seconds there.
const VM_PING: Duration = Duration::from_secs(45);

fn inside_vm() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut ovs = Ovs::start(false)?;
    let p1 = pod(&ovs, "kp1", 1, "02:00:00:00:00:0b", "10.128.0.11")?;
    let p2 = pod(&ovs, "kp2", 2, "02:00:00:00:00:0c", "10.128.0.12")?;
    let tun = pod(&ovs, "ktun", 3, TUN_MAC, "10.128.0.13")?;
    tun.exec("ip", &["addr", "add", "10.129.0.7/32", "dev", "lo"])?;
    tun.exec("sysctl", &["-qw", "net.ipv4.conf.all.rp_filter=0"])?;
    let dp = ovs.tool("ovs-appctl", &["dpif/show"], None)?;
    ensure!(
        dp.contains("system@ovs-system"),
        "kernel datapath in use:\n{dp}"
    );
    if let Err(e) = ping(&p1, "10.128.0.12", VM_PING) {
        anyhow::bail!(
            "local pods through the kernel datapath: {e:#}\n{}",
            ovs.diagnostics(&[&p1, &p2])
        );
    }
    ensure!(fails_to_ping(&p1, "10.129.0.7"), "no steering yet");
    let base = ovs.base_flow_count()?;

    let switch = Arc::new(OvsCli {
        rundir: Some(ovs.dir.path().to_path_buf()),
        timeout: Duration::from_secs(10),
    });
    let steering = Steering::new(switch, "br0");
    let port =
        rt.block_on(steering.resolve_port(Some("v-ktun"), "10.128.0.13".parse()?, TUN_MAC))?;
    let flows = steering_flows(&port, &["10.129.0.0/16".parse()?, "172.31.0.0/16".parse()?]);
    rt.block_on(steering.apply(&flows))?;
    ensure!(ovs.our_flows()?.len() == 4, "{:?}", ovs.our_flows()?);
    ensure!(ovs.base_flow_count()? == base);
    ping(&p1, "10.129.0.7", VM_PING).context("steered through the kernel datapath")?;
    let to_tunnel = ovs
        .our_flows()?
        .into_iter()
        .find(|l| l.contains("nw_dst=10.129.0.0/16"))
        .context("flow")?;
    ensure!(!to_tunnel.contains("n_packets=0,"), "{to_tunnel}");

    ovs.restart_vswitchd()?;
    ovs.load_base_flows()?;
    ensure!(
        ovs.our_flows()?.is_empty(),
        "a restart loses OpenFlow flows"
    );
    let outcome = rt.block_on(steering.recheck())?;
    ensure!(format!("{outcome:?}") == "Restored", "{outcome:?}");
    ping(&p1, "10.129.0.7", VM_PING).context("after the restart")?;

    rt.block_on(steering.remove())?;
    ensure!(ovs.our_flows()?.is_empty());
    ensure!(ovs.base_flow_count()? == base);
    println!("kernel datapath steering: ok");
    Ok(())
}
