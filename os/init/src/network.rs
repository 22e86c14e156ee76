//! The board's network link (`board.network` in the plan), brought up by init as PID 1
//! before any component starts: `lo` up, then the board's interface gets its static IPv4
//! address and comes up, then the default route through the gateway.
//!
//! Init does it, not the `net` driver that owns the network afterwards: configuring the
//! initial network namespace needs `CAP_NET_ADMIN` in the user namespace that owns it, and
//! every component runs in a user namespace of its own (docs/decisions/0081). Like loading
//! the board's kernel modules, it is board bring-up from the plan, done once; name
//! resolution and the egress policy stay with the driver.
//!
//! A link that cannot be brought up does not stop the boot: the failure is reported and the
//! components start without the network (the agent keeps retrying, spooling telemetry).
//! The kernel calls sit behind [`LinkControl`] so the order of the steps is unit-tested;
//! [`KernelLinks`] is tested for real in a private network namespace.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use testudo_plan::BoardNetwork;

use crate::error::NetworkError;

/// The loopback interface, brought up on every board with a network.
pub const LOOPBACK: &str = "lo";
/// How long init waits for the board's interface to appear (its driver probes it
/// asynchronously after the module is loaded).
pub const INTERFACE_WAIT: Duration = Duration::from_secs(10);

/// The board's link settings, parsed from the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSettings {
    /// The interface's kernel name.
    pub interface: String,
    /// Its address.
    pub address: Ipv4Addr,
    /// The prefix length of its subnet.
    pub prefix: u8,
    /// The default gateway.
    pub gateway: Option<Ipv4Addr>,
}

impl LinkSettings {
    /// The settings `board` declares (the config checked them; the plan file is read again
    /// here, so they are checked again).
    pub fn of(board: &BoardNetwork) -> Result<LinkSettings, NetworkError> {
        let bad_address = || NetworkError::Address {
            value: board.address.clone(),
        };
        let (address, prefix) = board.address.split_once('/').ok_or_else(bad_address)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad_address())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad_address())?;
        if prefix > 32 {
            return Err(bad_address());
        }
        let gateway = match &board.gateway {
            Some(text) => Some(text.parse().map_err(|_| NetworkError::Gateway {
                value: text.clone(),
            })?),
            None => None,
        };
        if board.interface.is_empty() || board.interface.len() >= libc::IFNAMSIZ {
            return Err(NetworkError::InterfaceName {
                name: board.interface.clone(),
            });
        }
        Ok(LinkSettings {
            interface: board.interface.clone(),
            address,
            prefix,
            gateway,
        })
    }

    /// The subnet mask of the prefix length.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// One line for the console: `eth0 10.0.2.15/24 via 10.0.2.2`.
    pub fn describe(&self) -> String {
        let via = self
            .gateway
            .map(|gateway| format!(" via {gateway}"))
            .unwrap_or_default();
        format!("{} {}/{}{via}", self.interface, self.address, self.prefix)
    }
}

/// The kernel's link configuration, as far as init uses it.
pub trait LinkControl {
    /// Whether the interface exists.
    fn exists(&self, interface: &str) -> bool;
    /// Sets the interface administratively up.
    fn set_up(&self, interface: &str) -> std::io::Result<()>;
    /// Gives the interface its IPv4 address and netmask.
    fn set_ipv4(
        &self,
        interface: &str,
        address: Ipv4Addr,
        netmask: Ipv4Addr,
    ) -> std::io::Result<()>;
    /// Adds the default route through `gateway` (an existing one is left as it is).
    fn add_default_route(&self, gateway: Ipv4Addr) -> std::io::Result<()>;
}

/// Brings the board's link up: `lo`, then the interface (waiting up to `wait` for it to
/// appear), its address, and the default route.
pub fn bring_up(
    links: &dyn LinkControl,
    settings: &LinkSettings,
    wait: Duration,
) -> Result<(), NetworkError> {
    let step = |step: &'static str, interface: &str| {
        let interface = interface.to_owned();
        move |source| NetworkError::Step {
            step,
            interface,
            source,
        }
    };
    links
        .set_up(LOOPBACK)
        .map_err(step("setting it up", LOOPBACK))?;
    let name = settings.interface.as_str();
    let deadline = Instant::now() + wait;
    while !links.exists(name) {
        if Instant::now() >= deadline {
            return Err(NetworkError::NoInterface {
                interface: name.to_owned(),
                waited: wait,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    links
        .set_ipv4(name, settings.address, settings.netmask())
        .map_err(step("setting its address", name))?;
    links.set_up(name).map_err(step("setting it up", name))?;
    if let Some(gateway) = settings.gateway {
        links
            .add_default_route(gateway)
            .map_err(step("adding the default route", name))?;
    }
    Ok(())
}

/// The kernel's interface ioctls (`SIOCSIFFLAGS`, `SIOCSIFADDR`, `SIOCSIFNETMASK`,
/// `SIOCADDRT`) on an `AF_INET` datagram socket. Needs `CAP_NET_ADMIN` in the network
/// namespace's owner.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelLinks;

/// `struct rtentry` of `<linux/route.h>` (not in the libc crate for glibc targets).
#[repr(C)]
struct RouteEntry {
    pad1: libc::c_ulong,
    destination: libc::sockaddr,
    gateway: libc::sockaddr,
    genmask: libc::sockaddr,
    flags: libc::c_ushort,
    pad2: libc::c_short,
    pad3: libc::c_ulong,
    pad4: *mut libc::c_void,
    metric: libc::c_short,
    device: *mut libc::c_char,
    mtu: libc::c_ulong,
    window: libc::c_ulong,
    irtt: libc::c_ushort,
}

fn sockaddr_of(address: Ipv4Addr) -> libc::sockaddr {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) on Linux; the generic
    // form is what the ioctls take.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
}

fn control_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn interface_request(interface: &str) -> std::io::Result<libc::ifreq> {
    // SAFETY: ifreq is plain data for which all zero bytes are valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    if interface.len() >= request.ifr_name.len() || interface.contains('\0') {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(interface.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

fn ioctl<T>(request: libc::c_ulong, argument: &mut T) -> std::io::Result<()> {
    let socket = control_socket()?;
    // SAFETY: `argument` is the structure this request reads or writes, alive for the call.
    let result = unsafe {
        libc::ioctl(
            socket.as_raw_fd(),
            request,
            argument as *mut T as *mut libc::c_void,
        )
    };
    if result < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl LinkControl for KernelLinks {
    fn exists(&self, interface: &str) -> bool {
        std::path::Path::new("/sys/class/net")
            .join(interface)
            .exists()
    }

    fn set_up(&self, interface: &str) -> std::io::Result<()> {
        let mut request = interface_request(interface)?;
        ioctl(libc::SIOCGIFFLAGS, &mut request)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { request.ifr_ifru.ifru_flags };
        request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        ioctl(libc::SIOCSIFFLAGS, &mut request)
    }

    fn set_ipv4(
        &self,
        interface: &str,
        address: Ipv4Addr,
        netmask: Ipv4Addr,
    ) -> std::io::Result<()> {
        let mut request = interface_request(interface)?;
        request.ifr_ifru.ifru_addr = sockaddr_of(address);
        ioctl(libc::SIOCSIFADDR, &mut request)?;
        let mut request = interface_request(interface)?;
        request.ifr_ifru.ifru_netmask = sockaddr_of(netmask);
        ioctl(libc::SIOCSIFNETMASK, &mut request)
    }

    fn add_default_route(&self, gateway: Ipv4Addr) -> std::io::Result<()> {
        let mut route = RouteEntry {
            pad1: 0,
            destination: sockaddr_of(Ipv4Addr::UNSPECIFIED),
            gateway: sockaddr_of(gateway),
            genmask: sockaddr_of(Ipv4Addr::UNSPECIFIED),
            flags: libc::RTF_UP | libc::RTF_GATEWAY,
            pad2: 0,
            pad3: 0,
            pad4: std::ptr::null_mut(),
            metric: 0,
            device: std::ptr::null_mut(),
            mtu: 0,
            window: 0,
            irtt: 0,
        };
        match ioctl(libc::SIOCADDRT, &mut route) {
            Err(error) if error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other,
        }
    }
}

/// PID 1's step: brings up the plan's board network if it declares one, and says on the
/// console what happened (a failure is reported, never fatal).
pub fn bring_up_board(board: Option<&BoardNetwork>) {
    let Some(board) = board else {
        return;
    };
    let outcome = LinkSettings::of(board)
        .and_then(|settings| bring_up(&KernelLinks, &settings, INTERFACE_WAIT).map(|()| settings));
    match outcome {
        Ok(settings) => println!("testudo-init: network {} up", settings.describe()),
        Err(error) => eprintln!(
            "testudo-init: network: {}; the components start without it",
            testudo_error_chain::error_chain(&error)
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Records the calls; `appears_after` calls to `exists` return false first.
    #[derive(Default)]
    struct Recording {
        calls: RefCell<Vec<String>>,
        appears_after: RefCell<u32>,
        fail: Option<&'static str>,
    }

    impl Recording {
        fn record(&self, call: String) -> std::io::Result<()> {
            let failing = self.fail.is_some_and(|f| call.starts_with(f));
            self.calls.borrow_mut().push(call);
            if failing {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
    }

    impl LinkControl for Recording {
        fn exists(&self, _interface: &str) -> bool {
            let mut left = self.appears_after.borrow_mut();
            if *left == 0 {
                return true;
            }
            *left -= 1;
            false
        }
        fn set_up(&self, interface: &str) -> std::io::Result<()> {
            self.record(format!("up {interface}"))
        }
        fn set_ipv4(
            &self,
            interface: &str,
            address: Ipv4Addr,
            netmask: Ipv4Addr,
        ) -> std::io::Result<()> {
            self.record(format!("address {interface} {address} {netmask}"))
        }
        fn add_default_route(&self, gateway: Ipv4Addr) -> std::io::Result<()> {
            self.record(format!("route {gateway}"))
        }
    }

    fn qemu_board() -> BoardNetwork {
        BoardNetwork {
            interface: "eth0".into(),
            address: "10.0.2.15/24".into(),
            gateway: Some("10.0.2.2".into()),
            dns: vec!["10.0.2.3".into()],
        }
    }

    #[test]
    fn loopback_then_address_then_up_then_route() {
        let links = Recording {
            appears_after: RefCell::new(2),
            ..Recording::default()
        };
        let settings = LinkSettings::of(&qemu_board()).unwrap();
        assert_eq!(settings.describe(), "eth0 10.0.2.15/24 via 10.0.2.2");
        bring_up(&links, &settings, Duration::from_secs(5)).unwrap();
        assert_eq!(
            *links.calls.borrow(),
            [
                "up lo",
                "address eth0 10.0.2.15 255.255.255.0",
                "up eth0",
                "route 10.0.2.2"
            ]
        );
    }

    #[test]
    fn a_missing_interface_or_a_failed_step_is_named() {
        let links = Recording {
            appears_after: RefCell::new(u32::MAX),
            ..Recording::default()
        };
        let settings = LinkSettings::of(&qemu_board()).unwrap();
        let error = bring_up(&links, &settings, Duration::from_millis(250)).unwrap_err();
        assert!(
            matches!(&error, NetworkError::NoInterface { interface, .. } if interface == "eth0"),
            "{error:?}"
        );
        let links = Recording {
            fail: Some("route"),
            ..Recording::default()
        };
        let error = bring_up(&links, &settings, Duration::ZERO).unwrap_err();
        assert!(
            matches!(
                &error,
                NetworkError::Step {
                    step: "adding the default route",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn settings_that_are_not_addresses_are_refused() {
        for (address, gateway, interface) in [
            ("10.0.2.15", "10.0.2.2", "eth0"),
            ("10.0.2.15/33", "10.0.2.2", "eth0"),
            ("10.0.2/24", "10.0.2.2", "eth0"),
            ("10.0.2.15/24", "gateway", "eth0"),
            ("10.0.2.15/24", "10.0.2.2", ""),
            ("10.0.2.15/24", "10.0.2.2", "a-name-far-too-long"),
        ] {
            let board = BoardNetwork {
                interface: interface.into(),
                address: address.into(),
                gateway: Some(gateway.into()),
                dns: Vec::new(),
            };
            assert!(LinkSettings::of(&board).is_err(), "{board:?}");
        }
        let host = BoardNetwork {
            address: "192.168.1.10/32".into(),
            gateway: None,
            ..qemu_board()
        };
        let settings = LinkSettings::of(&host).unwrap();
        assert_eq!(settings.netmask(), Ipv4Addr::BROADCAST);
        assert_eq!(settings.describe(), "eth0 192.168.1.10/32");
        let any = LinkSettings {
            prefix: 0,
            ..settings
        };
        assert_eq!(any.netmask(), Ipv4Addr::UNSPECIFIED);
    }
}
