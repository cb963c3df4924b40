//! `corral-mdns-spoof`: a test-only host on the LAN without the mesh key
//! (issue 18). It learns a mesh's public fingerprint from the `mesh=` TXT
//! of any announced member, then either floods the LAN with fake
//! `_corral._tcp.local.` instances of that mesh pointing at addresses that
//! refuse or never answer (`flood`), or sends forged mDNS goodbyes (TTL 0)
//! for a real member's instance (`goodbye`), to the mDNS group or, with
//! `--to`, to one host. Built only with the
//! `test-hooks` feature; the netns tests run it.
//!
//! ```text
//! corral-mdns-spoof flood --count N --port P --addr IP [--addr IP ...] [--secs S]
//! corral-mdns-spoof goodbye --peer PEER_ID [--every-ms 500] [--to IP] [--secs S]
//! ```

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use corral_node::net::discovery::{SERVICE_TYPE, txt_properties};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};

const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

/// What to do, from the command line.
enum Mode {
    Flood {
        count: usize,
        port: u16,
        addrs: Vec<Ipv4Addr>,
    },
    Goodbye {
        peer: String,
        every: Duration,
        to: Ipv4Addr,
    },
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, secs) = parse(&args)?;
    let daemon = ServiceDaemon::new().context("mDNS daemon")?;
    let until = Instant::now() + Duration::from_secs(secs);
    match mode {
        Mode::Flood { count, port, addrs } => {
            let mesh = learn(&daemon, None)?.mesh;
            flood(&daemon, &mesh, count, port, &addrs)?;
            println!("announced {count} fake instances of mesh {mesh}");
            while Instant::now() < until {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Mode::Goodbye { peer, every, to } => {
            let target = learn(&daemon, Some(&peer))?;
            let packet = goodbye_packet(&target);
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).context("udp socket")?;
            let mut sent = 0u64;
            while Instant::now() < until {
                socket
                    .send_to(&packet, (to, 5353))
                    .context("send goodbye")?;
                sent += 1;
                std::thread::sleep(every);
            }
            println!("sent {sent} forged goodbyes for {}", target.fullname);
        }
    }
    let _ = daemon.shutdown();
    Ok(())
}

fn parse(args: &[String]) -> anyhow::Result<(Mode, u64)> {
    let mut count = 500;
    let mut port = 9;
    let mut addrs = Vec::new();
    let mut peer = None;
    let mut every = Duration::from_millis(500);
    let mut secs = 60;
    let mut to = MDNS_GROUP;
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--count" => count = value.parse().context("--count")?,
            "--port" => port = value.parse().context("--port")?,
            "--addr" => addrs.push(value.parse().context("--addr")?),
            "--peer" => peer = Some(value.clone()),
            "--every-ms" => every = Duration::from_millis(value.parse().context("--every-ms")?),
            "--secs" => secs = value.parse().context("--secs")?,
            "--to" => to = value.parse().context("--to")?,
            other => bail!("unknown flag {other}"),
        }
    }
    let mode = match args.first().map(String::as_str) {
        Some("flood") if !addrs.is_empty() => Mode::Flood { count, port, addrs },
        Some("flood") => bail!("flood needs at least one --addr"),
        Some("goodbye") => Mode::Goodbye {
            peer: peer.context("goodbye needs --peer")?,
            every,
            to,
        },
        _ => bail!("usage: corral-mdns-spoof flood|goodbye [flags]"),
    };
    Ok((mode, secs))
}

/// A real instance, as resolved.
struct Target {
    mesh: String,
    fullname: String,
    host: String,
    port: u16,
}

/// Browses until a corral instance (of `peer`, if given) resolves.
fn learn(daemon: &ServiceDaemon, peer: Option<&str>) -> anyhow::Result<Target> {
    let events = daemon.browse(SERVICE_TYPE).context("browse")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = events.recv_timeout(left) else {
            break;
        };
        if let ServiceEvent::ServiceResolved(service) = event {
            let Some(mesh) = service.get_property_val_str("mesh") else {
                continue;
            };
            if peer.is_none_or(|p| service.get_property_val_str("peer") == Some(p)) {
                let _ = daemon.stop_browse(SERVICE_TYPE);
                return Ok(Target {
                    mesh: mesh.to_string(),
                    fullname: service.fullname.clone(),
                    host: service.host.clone(),
                    port: service.port,
                });
            }
        }
    }
    bail!("no corral instance found on the LAN within 30 s")
}

/// Registers `count` instances with fresh peer ids, all at `addrs`:`port`.
fn flood(
    daemon: &ServiceDaemon,
    mesh: &str,
    count: usize,
    port: u16,
    addrs: &[Ipv4Addr],
) -> anyhow::Result<()> {
    let ips: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    let ips = ips.join(",");
    for i in 0..count {
        let peer = libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id();
        let instance = format!("spoof{i}");
        let host = format!("spoof{i}.local.");
        let properties = txt_properties(&peer, mesh);
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &host,
            ips.as_str(),
            port,
            &properties[..],
        )
        .context("service info")?;
        let mut info = Some(info);
        while let Some(next) = info.take() {
            match daemon.register(next.clone()) {
                Ok(()) => {}
                // The daemon's command queue holds 100: wait for room.
                Err(mdns_sd::Error::Again) => {
                    std::thread::sleep(Duration::from_millis(20));
                    info = Some(next);
                }
                Err(e) => bail!("register: {e}"),
            }
        }
    }
    Ok(())
}

/// An mDNS response with TTL 0 for an instance's PTR and SRV records: a
/// goodbye for that instance (RFC 6762 §10.1). The SRV carries the
/// cache-flush bit, as its owner sends it (mdns-sd matches on it).
fn goodbye_packet(target: &Target) -> Vec<u8> {
    let mut packet = vec![0, 0, 0x84, 0, 0, 0, 0, 2, 0, 0, 0, 0];
    let mut ptr = Vec::new();
    encode_name(&mut ptr, &target.fullname);
    encode_name(&mut packet, SERVICE_TYPE);
    record_tail(&mut packet, 12, 1, &ptr);
    let mut srv = vec![0, 0, 0, 0];
    srv.extend_from_slice(&target.port.to_be_bytes());
    encode_name(&mut srv, &target.host);
    encode_name(&mut packet, &target.fullname);
    record_tail(&mut packet, 33, 0x8001, &srv);
    packet
}

/// Type, class, TTL 0 and the record data.
fn record_tail(packet: &mut Vec<u8>, ty: u16, class: u16, rdata: &[u8]) {
    packet.extend_from_slice(&ty.to_be_bytes());
    packet.extend_from_slice(&class.to_be_bytes());
    packet.extend_from_slice(&0u32.to_be_bytes());
    let len = u16::try_from(rdata.len()).unwrap_or(u16::MAX);
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(rdata);
}

/// A DNS name as labels; the instance label may hold dots only as the
/// separator before the service type, which is how mdns-sd names them.
fn encode_name(out: &mut Vec<u8>, name: &str) {
    let (instance, rest) = match name.strip_suffix(SERVICE_TYPE) {
        Some(instance) if !instance.is_empty() => {
            (Some(instance.trim_end_matches('.')), SERVICE_TYPE)
        }
        _ => (None, name),
    };
    let labels = instance
        .into_iter()
        .chain(rest.split('.').filter(|l| !l.is_empty()));
    for label in labels {
        let bytes = &label.as_bytes()[..label.len().min(63)];
        out.push(u8::try_from(bytes.len()).unwrap_or(63));
        out.extend_from_slice(bytes);
    }
    out.push(0);
}
