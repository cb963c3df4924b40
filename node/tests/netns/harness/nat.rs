//! A NAT lab on top of [`Lan`]: the LAN's bridge plays the public internet,
//! and each router is a namespace with a WAN leg on it and a home bridge
//! behind it, doing NAT with nftables like a home router: hosts behind it
//! reach out, nobody reaches in (unsolicited packets are dropped, not
//! answered with a reset).

use std::process::{Command, Stdio};

use super::{Lan, ip, plug};

/// How a router maps its home hosts' connections to its public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// One public port per home socket whatever the destination (Linux's
    /// masquerade keeps the source port): hole punching can work.
    EndpointIndependent,
    /// A fresh random public port per connection (a "symmetric" NAT): hole
    /// punching cannot work; only a relay joins its hosts.
    Symmetric,
}

/// Whether nftables is here (the lab needs it). Panics when CI demands the
/// multi-host tests.
pub fn nft_available() -> bool {
    let here = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !here {
        let why = "the `nft` command (nftables) is missing";
        if std::env::var_os("CORRAL_REQUIRE_NETNS").is_some_and(|v| v == "1") {
            panic!("NAT tests cannot run: {why}, and CORRAL_REQUIRE_NETNS=1 forbids skipping");
        }
        eprintln!("\n!!! SKIPPING NAT tests: {why}. !!!\n");
    }
    here
}

fn run_in(ns: &str, program: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ip netns exec runs");
    if let Some(text) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("it ends");
    assert!(
        out.status.success(),
        "{program} {} in {ns}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lan {
    /// Adds a router on the public bridge with a home network behind it;
    /// returns its index (for [`Lan::add_home_host`]).
    pub fn add_router(&mut self, nat: Nat) -> usize {
        let r = self.routers.len();
        let ns = format!("{}r{r}", self.prefix);
        ip(&["netns", "add", &ns]);
        self.routers.push(ns.clone());
        plug(
            (&ns, "wan", &format!("10.77.0.{}/24", 200 + r)),
            (&self.bridge_ns, "br0", &format!("{}w{r}", self.prefix)),
        );
        ip(&["-n", &ns, "link", "add", "home", "type", "bridge"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("10.78.{r}.1/24"),
            "dev",
            "home",
        ]);
        ip(&["-n", &ns, "link", "set", "home", "up"]);
        run_in(&ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"], None);
        let flags = match nat {
            Nat::EndpointIndependent => "",
            Nat::Symmetric => "fully-random",
        };
        let rules = format!(
            "table ip nat {{\n\
             \x20 chain post {{ type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   oifname \"wan\" ip saddr 10.78.{r}.0/24 masquerade {flags}; }}\n\
             }}\n\
             table inet fw {{\n\
             \x20 chain input {{ type filter hook input priority filter; policy drop;\n\
             \x20   ct state established,related accept; iifname {{ \"lo\", \"home\" }} accept; }}\n\
             \x20 chain forward {{ type filter hook forward priority filter; policy drop;\n\
             \x20   ct state established,related accept; iifname \"home\" oifname \"wan\" accept; }}\n\
             }}\n"
        );
        run_in(&ns, "nft", &["-f", "-"], Some(&rules));
        r
    }

    /// Gives host `i`, on router `r`'s home network, another address there
    /// (as a DHCP lease that changed): its connections through the old one
    /// go dead.
    pub fn readdress(&mut self, i: usize, r: usize) {
        let ns = self.hosts[i].ns.clone();
        let dev = format!("v{i}");
        let addr = format!("10.78.{r}.{}", 100 + i);
        ip(&["-n", &ns, "addr", "flush", "dev", &dev]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &dev]);
        let gateway = format!("10.78.{r}.1");
        ip(&["-n", &ns, "route", "replace", "default", "via", &gateway]);
        ip(&["-n", &ns, "route", "replace", "224.0.0.0/4", "dev", &dev]);
        self.hosts[i].addr = addr;
    }

    /// Adds a host on router `r`'s home network; returns its index.
    pub fn add_home_host(&mut self, r: usize) -> usize {
        let router = self.routers[r].clone();
        let addr = format!("10.78.{r}.{}", 10 + self.hosts.len());
        let i = self.add_host_on(&router, "home", addr);
        let gateway = format!("10.78.{r}.1");
        ip(&[
            "-n",
            &self.hosts[i].ns,
            "route",
            "add",
            "default",
            "via",
            &gateway,
        ]);
        i
    }
}
