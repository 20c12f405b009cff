//! Steering remote traffic to the tunnel pod through the SDN's OVS bridge (`steering: ovs`).
//!
//! [`flows`] renders the flows (pure), [`ovs`] talks to the switch, and [`Steering`] keeps them
//! installed: a change replaces our cookie's flows in one bundle; a periodic [`Steering::recheck`]
//! compares the switch's dump with the dump taken right after the last install and reinstalls
//! when they differ (an `ovs-vswitchd` restart loses every OpenFlow flow); [`Steering::remove`]
//! deletes them on clean shutdown.

pub mod flows;
pub mod ovs;

use std::net::IpAddr;
use std::sync::Arc;

pub use flows::{COOKIE, Flow, SteeringPort};
pub use ovs::{FakeSwitch, OvsCli, OvsError, Switch};

/// Errors of the steering controller.
#[derive(Debug, thiserror::Error)]
pub enum SteeringError {
    /// The switch refused or could not be reached.
    #[error("ovs")]
    Ovs(#[from] OvsError),
    /// No port of the bridge carries the pod's IP, and none is configured.
    #[error("no interface with external_ids:ip={ip} on the switch; set tunnel.ovsPort")]
    PortNotFound { ip: IpAddr },
}

/// What an apply or recheck did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The switch already had exactly these flows.
    Unchanged,
    /// New flows were installed.
    Installed,
    /// The flows had been lost or altered and were reinstalled.
    Restored,
}

struct Applied {
    flows: Vec<Flow>,
    /// The switch's own rendering of them right after the install.
    dump: Vec<String>,
}

/// Keeps our flows on one bridge.
pub struct Steering {
    switch: Arc<dyn Switch>,
    bridge: String,
    applied: tokio::sync::Mutex<Option<Applied>>,
}

impl Steering {
    pub fn new(switch: Arc<dyn Switch>, bridge: impl Into<String>) -> Self {
        Self {
            switch,
            bridge: bridge.into(),
            applied: tokio::sync::Mutex::new(None),
        }
    }

    /// The bridge programmed.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Finds the tunnel pod's port: the configured interface, else the one tagged with its IP.
    pub async fn resolve_port(
        &self,
        configured: Option<&str>,
        pod_ip: IpAddr,
        mac: &str,
    ) -> Result<SteeringPort, SteeringError> {
        let interface = match configured {
            Some(i) => i.to_string(),
            None => self
                .switch
                .interface_with_ip(pod_ip)
                .await?
                .ok_or(SteeringError::PortNotFound { ip: pod_ip })?,
        };
        let ofport = self.switch.ofport(&interface).await?;
        Ok(SteeringPort {
            bridge: self.bridge.clone(),
            ofport,
            mac: mac.to_ascii_lowercase(),
        })
    }

    /// Makes the bridge carry exactly `flows` under our cookie. Adopts what is there after a
    /// restart of ours: flows already matching are left alone (their counters too).
    pub async fn apply(&self, flows: &[Flow]) -> Result<Outcome, SteeringError> {
        let mut applied = self.applied.lock().await;
        let current = self.switch.dump_flows(&self.bridge, COOKIE).await?;
        if let Some(a) = applied.as_ref()
            && a.flows == flows
            && a.dump == current
        {
            return Ok(Outcome::Unchanged);
        }
        let restore = applied.as_ref().is_some_and(|a| a.flows == flows);
        self.switch
            .replace_flows(&self.bridge, COOKIE, flows)
            .await?;
        let dump = self.switch.dump_flows(&self.bridge, COOKIE).await?;
        let unchanged = applied.is_none() && dump == current;
        *applied = Some(Applied {
            flows: flows.to_vec(),
            dump,
        });
        Ok(if unchanged {
            Outcome::Unchanged
        } else if restore {
            Outcome::Restored
        } else {
            Outcome::Installed
        })
    }

    /// Reinstalls the last applied flows when the switch lost or changed them.
    pub async fn recheck(&self) -> Result<Outcome, SteeringError> {
        let flows = match self.applied.lock().await.as_ref() {
            Some(a) => a.flows.clone(),
            None => return Ok(Outcome::Unchanged),
        };
        self.apply(&flows).await
    }

    /// Deletes every flow of our cookie (clean shutdown).
    pub async fn remove(&self) -> Result<(), SteeringError> {
        let mut applied = self.applied.lock().await;
        self.switch.replace_flows(&self.bridge, COOKIE, &[]).await?;
        *applied = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> SteeringPort {
        SteeringPort {
            bridge: "br0".into(),
            ofport: 7,
            mac: "0a:58:0a:80:00:07".into(),
        }
    }

    #[tokio::test]
    async fn install_recheck_restore_remove() {
        let fake = Arc::new(FakeSwitch::with_port("veth7", 7));
        fake.add_foreign_flow("br0", 0, "table=0,priority=0 actions=NORMAL");
        let s = Steering::new(fake.clone(), "br0");
        let flows = flows::steering_flows(&port(), &["10.129.0.0/16".parse().unwrap()]);
        assert_eq!(s.apply(&flows).await.unwrap(), Outcome::Installed);
        assert_eq!(s.apply(&flows).await.unwrap(), Outcome::Unchanged);
        assert_eq!(s.recheck().await.unwrap(), Outcome::Unchanged);
        assert_eq!(
            fake.dump(),
            "br0 cookie=0x0 table=0,priority=0 actions=NORMAL\n\
             br0 cookie=0xca5ea70000000001 table=0,priority=400,ip,in_port=7,nw_src=10.129.0.0/16 actions=goto_table:30\n\
             br0 cookie=0xca5ea70000000001 table=30,priority=400,ip,nw_dst=10.129.0.0/16 actions=set_field:0a:58:0a:80:00:07->eth_dst,output:7\n"
        );
        fake.restart();
        assert_eq!(s.recheck().await.unwrap(), Outcome::Restored);
        assert_eq!(fake.dump().lines().count(), 2);
        fake.add_foreign_flow("br0", 0, "table=0,priority=0 actions=NORMAL");
        s.remove().await.unwrap();
        assert_eq!(
            fake.dump(),
            "br0 cookie=0x0 table=0,priority=0 actions=NORMAL\n"
        );
    }

    #[tokio::test]
    async fn a_failed_install_is_retried_by_the_next_apply() {
        let fake = Arc::new(FakeSwitch::default());
        let s = Steering::new(fake.clone(), "br0");
        let flows = flows::steering_flows(&port(), &["10.129.0.0/16".parse().unwrap()]);
        fake.fail_next();
        assert!(s.apply(&flows).await.is_err());
        assert_eq!(s.apply(&flows).await.unwrap(), Outcome::Installed);
    }

    #[tokio::test]
    async fn port_found_by_pod_ip() {
        let fake = Arc::new(FakeSwitch::with_port("veth7", 7));
        fake.set_port_ip("veth7", "10.128.0.7".parse().unwrap());
        let s = Steering::new(fake, "br0");
        let p = s
            .resolve_port(None, "10.128.0.7".parse().unwrap(), "0A:58:0A:80:00:07")
            .await
            .unwrap();
        assert_eq!(p, port());
        assert!(matches!(
            s.resolve_port(None, "10.128.0.8".parse().unwrap(), "x")
                .await,
            Err(SteeringError::PortNotFound { .. })
        ));
    }
}
