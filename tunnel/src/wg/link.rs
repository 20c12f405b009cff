//! rtnetlink helpers shared by both backends: find, create, raise and delete the interface.

use futures::TryStreamExt as _;
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};

/// Errors of link handling.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Opening the rtnetlink socket failed.
    #[error("open rtnetlink socket")]
    Connect(#[source] std::io::Error),
    /// A netlink request failed.
    #[error("{op} link {name}")]
    Request {
        /// What was attempted.
        op: &'static str,
        /// The interface.
        name: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
}

pub(crate) fn connect() -> Result<Handle, LinkError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
    tokio::spawn(conn);
    Ok(handle)
}

fn request(op: &'static str, name: &str) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let name = name.to_owned();
    move |source| LinkError::Request { op, name, source }
}

/// The index of `name`, or `None` when it does not exist.
pub(crate) async fn index(handle: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_owned()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        // The kernel answers ENODEV for an unknown name.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code().abs() == libc::ENODEV => Ok(None),
        Err(e) => Err(request("get", name)(e)),
    }
}

/// Creates a `wireguard` link unless one of that name exists (adopt, don't recreate).
pub(crate) async fn ensure_wireguard(handle: &Handle, name: &str) -> Result<u32, LinkError> {
    if let Some(idx) = index(handle, name).await? {
        return Ok(idx);
    }
    handle
        .link()
        .add(LinkWireguard::new(name).build())
        .execute()
        .await
        .map_err(request("add", name))?;
    index(handle, name)
        .await?
        .ok_or_else(|| request("find new", name)(rtnetlink::Error::RequestFailed))
}

/// Sets the MTU and brings the link up.
pub(crate) async fn up(handle: &Handle, index: u32, name: &str, mtu: u32) -> Result<(), LinkError> {
    let msg = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
    handle
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(request("set up", name))
}

/// Deletes a link by index.
pub(crate) async fn delete(handle: &Handle, index: u32, name: &str) -> Result<(), LinkError> {
    handle
        .link()
        .del(index)
        .execute()
        .await
        .map_err(request("delete", name))
}
