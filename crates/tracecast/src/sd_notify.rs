//! systemd readiness notification (`Type=notify`), hand-written: one datagram to the socket
//! systemd names in `$NOTIFY_SOCKET`. Without that variable (not under systemd) it does
//! nothing, so it is always safe to call.

use std::io;

/// Tells systemd the daemon is ready (receivers listening). Failures are logged, never
/// fatal: a missing notification only makes systemd time the start-up out, which is visible.
pub fn notify_ready() {
    if let Err(e) = notify("READY=1") {
        tracing::warn!("cannot notify systemd of readiness via $NOTIFY_SOCKET: {e}");
    }
}

/// Sends `state` (e.g. `READY=1`) to `$NOTIFY_SOCKET` if set.
pub fn notify(state: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(path) if !path.is_empty() => send(&path, state),
        _ => Ok(()),
    }
}

#[cfg(unix)]
fn send(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::UnixDatagram;

    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    // A leading '@' names a Linux abstract socket (systemd may use one in containers).
    if let Some(name) = bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "abstract NOTIFY_SOCKET is Linux-only",
            ));
        }
    }
    socket.send_to(state.as_bytes(), path)?;
    Ok(())
}

#[cfg(not(unix))]
fn send(_path: &std::ffi::OsStr, _state: &str) -> io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn sends_the_state_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        super::send(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
