//! Networking: a partition's `nic`, `listen` and `routes` keys and the
//! manifest's `[[forward]]` entries.
//!
//! Checks what the shape cannot say (addresses inside their subnet, a NIC
//! or a host port used twice, a route or forward to a port nobody listens
//! on, a gateway route without its channels) and places each NIC: a
//! virtio-mmio transport on a 4 KiB page of transports that no other
//! partition uses (QEMU packs eight transports into one page and stage 2
//! maps whole pages), whose every transport then belongs to the NIC's
//! partition. `hallows run` plugs the virtio-net device into that
//! transport's QEMU bus, so placement never depends on QEMU's own order.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range as Span;

use hallows_abi::{MAX_LISTEN, MAX_ROUTES};
use hallows_table::MAX_REGIONS;
use toml::Spanned;

use crate::diag::{did_you_mean, Diagnostics, FileId};
use crate::raw::{NicModeName, ProtocolName, RawForward, RawPartition};
use crate::{Board, Channel, Forward, Nic, NicMode, Partition, Protocol, Route, PAGE_SIZE};

/// Smallest slot of a gateway link channel: one frame of the gateway
/// protocol (`hallows-link`) must fit.
pub const LINK_MIN_SLOT_SIZE: u32 = hallows_abi::LINK_SLOT_SIZE as u32;
/// Fewest slots of a gateway link channel.
pub const LINK_MIN_SLOTS: u32 = hallows_abi::LINK_MIN_SLOTS as u32;

/// Parses `a.b.c.d/len` (len 1..=30, so the subnet has room for a router).
fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!("`{}` has no prefix length", s.escape_debug()));
    };
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{}` is not an IPv4 address", addr.escape_debug()))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| (1..=30).contains(l))
        .ok_or_else(|| format!("prefix length `{}` is not 1 to 30", len.escape_debug()))?;
    Ok((addr, len))
}

fn subnet(addr: Ipv4Addr, len: u8) -> (u32, u32) {
    let mask = u32::MAX << (32 - u32::from(len));
    (u32::from(addr) & mask, mask)
}

fn port(d: &mut Diagnostics, file: FileId, v: &Spanned<u64>, what: &str) -> Option<u16> {
    match u16::try_from(*v.get_ref()) {
        Ok(p) if p != 0 => Some(p),
        _ => {
            d.error(file, v.span(), format!("{what} {} is not a TCP port", v.get_ref()))
                .help("ports are 1 to 65535");
            None
        }
    }
}

/// The 4 KiB page a device's registers start on.
fn page_of(board: &Board, name: &str) -> Option<u64> {
    board.device(name).map(|d| d.mmio.base & !(PAGE_SIZE - 1))
}

/// Checks the network keys of every partition and the `[[forward]]`
/// entries, fills each partition's [`Net`], adds each NIC's page of
/// transports to its partition's devices, and returns the forwards.
/// `partitions` is in the same order as `raws`.
pub(crate) fn check(
    d: &mut Diagnostics,
    file: FileId,
    board: &Board,
    raws: &[&RawPartition],
    partitions: &mut [Partition],
    channels: &[Channel],
    forwards: &[RawForward],
) -> Vec<Forward> {
    let names: Vec<String> = partitions.iter().map(|p| p.name.clone()).collect();
    // Pages of transports someone's `devices` already holds.
    let mut taken_pages: Vec<u64> = partitions
        .iter()
        .flat_map(|p| p.devices.iter())
        .filter_map(|n| page_of(board, n))
        .collect();
    let mut nic_devices: HashMap<String, (String, Span<usize>)> = HashMap::new();
    let mut nic_count = 0u8;

    // NICs first: routes and forwards need to know who owns one.
    for (i, raw) in raws.iter().enumerate() {
        let Some(nic) = &raw.nic else { continue };
        let name = names[i].clone();
        let nic_span = nic.span();
        let nic = nic.get_ref();
        if !board.devices.iter().any(|x| crate::dma_capable(&x.compatible) && x.qemu_bus.is_some()) {
            d.error(file, nic_span.clone(), format!("partition `{name}` has a `nic`, but board \"{}\" has no virtio-mmio transport to plug one into", board.name))
                .help(match board.arch {
                    crate::Arch::X86_64 => "use board \"qemu-microvm\" (QEMU's microvm machine, with virtio-mmio transports), or remove `nic`",
                    _ => "use a board with `virtio,mmio` devices that have a `qemu_bus`, or remove `nic`",
                });
            continue;
        }
        let (address, prefix_len) = match parse_cidr(nic.address.get_ref()) {
            Ok(a) => a,
            Err(why) => {
                d.error(file, nic.address.span(), format!("nic address {why}"))
                    .help("write the address with its subnet's prefix length, e.g. `address = \"10.0.2.15/24\"`");
                continue;
            }
        };
        let (net, mask) = subnet(address, prefix_len);
        let host = u32::from(address) & !mask;
        if host == 0 || host == !mask {
            d.error(file, nic.address.span(), format!("{address} is the {} address of its subnet {}/{prefix_len}", if host == 0 { "network" } else { "broadcast" }, Ipv4Addr::from(net)))
                .help("pick a host address inside the subnet");
            continue;
        }
        // QEMU's user-mode network answers as the router (or, without
        // one, as the subnet's second address) and as DNS on the third.
        let slirp_host = nic.router.as_ref().and_then(|r| r.get_ref().parse::<Ipv4Addr>().ok()).unwrap_or(Ipv4Addr::from(net + 2));
        if address == slirp_host || u32::from(address) == net + 3 {
            d.error(file, nic.address.span(), format!("{address} is taken by QEMU's user-mode network on this subnet (its host side answers on {slirp_host}, its DNS on {})", Ipv4Addr::from(net + 3)))
                .help(format!("pick another host address, e.g. {}", Ipv4Addr::from(net + 15)));
            continue;
        }
        let mut router = None;
        if let Some(r) = &nic.router {
            match r.get_ref().parse::<Ipv4Addr>() {
                Err(_) => {
                    d.error(file, r.span(), format!("router `{}` is not an IPv4 address", r.get_ref().escape_debug()));
                }
                Ok(ra) if u32::from(ra) & mask != net => {
                    d.error(file, r.span(), format!("router {ra} is outside the NIC's subnet {}/{prefix_len}", Ipv4Addr::from(net)))
                        .related(file, nic.address.span(), "address and subnet given here")
                        .help("a router must be reachable on the NIC's own subnet");
                }
                Ok(ra) if ra == address => {
                    d.error(file, r.span(), format!("router {ra} is the NIC's own address"));
                }
                Ok(ra) => router = Some(ra),
            }
        }
        if raw.dma.is_none() {
            d.error(file, nic_span.clone(), format!("partition `{name}` owns a NIC (a virtio device that masters DMA) but does not declare dma = \"trusted\""))
                .help("without an IOMMU a NIC can read and write any physical address; add dma = \"trusted\" if you trust this partition's guest with the whole machine's memory");
        }
        // Placement.
        let transport = if let Some(dv) = &nic.device {
            let dname = dv.get_ref();
            let Some(dev) = crate::disk::named_transport(d, file, board, dv, "a NIC") else { continue };
            if let Some((owner, ospan)) = nic_devices.get(dname.as_str()) {
                d.error(file, dv.span(), format!("device `{dname}` is already the NIC of partition `{owner}`"))
                    .related(file, ospan.clone(), "NIC declared here")
                    .help("a NIC belongs to exactly one partition; leave `device` out to have a free one placed");
                continue;
            }
            let page = page_of(board, dname).unwrap_or(0);
            let others: Vec<&str> = partitions
                .iter()
                .filter(|p| p.name != name && p.devices.iter().any(|n| page_of(board, n) == Some(page)))
                .map(|p| p.name.as_str())
                .collect();
            if let Some(owner) = others.first() {
                d.error(file, dv.span(), format!("device `{dname}` shares the 4 KiB page {page:#x} with devices of partition `{owner}`"))
                    .help("stage-2 maps whole pages: pick a transport on a page nobody else uses, or leave `device` out to have one placed");
                continue;
            }
            dev
        } else {
            // The lowest free page of transports QEMU can plug a NIC into;
            // the NIC takes the page's last transport.
            let mut pages: Vec<u64> = board
                .devices
                .iter()
                .filter(|x| crate::dma_capable(&x.compatible) && x.qemu_bus.is_some())
                .map(|x| x.mmio.base & !(PAGE_SIZE - 1))
                .filter(|p| !taken_pages.contains(p))
                .collect();
            pages.sort_unstable();
            pages.dedup();
            let Some(&page) = pages.first() else {
                d.error(file, nic_span.clone(), format!("no free page of virtio-mmio transports is left on board \"{}\" for the NIC of partition `{name}`", board.name))
                    .help("every partition with virtio devices owns whole 4 KiB pages of transports: give fewer partitions NICs or devices");
                continue;
            };
            match board
                .devices
                .iter()
                .filter(|x| x.mmio.base & !(PAGE_SIZE - 1) == page && x.qemu_bus.is_some())
                .max_by_key(|x| x.mmio.base)
            {
                Some(x) => x.clone(),
                None => continue,
            }
        };
        let page = transport.mmio.base & !(PAGE_SIZE - 1);
        taken_pages.push(page);
        nic_devices.insert(transport.name.clone(), (name.clone(), nic_span.clone()));
        // The partition owns every transport of the page (and their interrupts).
        let page_range = crate::Range::new(page, PAGE_SIZE);
        for x in board.devices.iter().filter(|x| x.mmio.overlaps(&page_range)) {
            if !partitions[i].devices.contains(&x.name) {
                partitions[i].devices.push(x.name.clone());
            }
        }
        // One stage-2 region per device page and per channel end.
        let ends = channels.iter().filter(|c| c.from == name || c.to == name).count() as u64;
        let regions = crate::check::device_pages(board, &partitions[i].devices) + ends;
        if regions > MAX_REGIONS as u64 {
            d.error(file, nic_span.clone(), format!("with its NIC, partition `{name}` needs {regions} memory regions (device pages and channel ends); the system table holds at most {MAX_REGIONS}"))
                .help("connect fewer channels to this partition: routes to the same service share one pair");
            continue;
        }
        nic_count += 1;
        partitions[i].net.nic = Some(Nic {
            address,
            prefix_len,
            router,
            mode: match nic.mode.as_ref().map(|m| *m.get_ref()) {
                Some(NicModeName::Interrupt) => NicMode::Interrupt,
                _ => NicMode::Poll,
            },
            qemu_bus: transport.qemu_bus.clone().unwrap_or_default(),
            device: transport.name,
            // Locally administered, unicast, unique per NIC.
            mac: [0x02, 0x48, 0x41, 0x4c, 0x00, nic_count],
        });
    }

    // Listening ports.
    for (i, raw) in raws.iter().enumerate() {
        let name = names[i].clone();
        let mut seen: HashMap<u16, Span<usize>> = HashMap::new();
        if raw.listen.len() > MAX_LISTEN {
            d.error(file, raw.listen[MAX_LISTEN].span(), format!("partition `{name}` listens on {} ports; the boot information holds at most {MAX_LISTEN}", raw.listen.len()));
        }
        for v in raw.listen.iter().take(MAX_LISTEN) {
            let Some(p) = port(d, file, v, "listen port") else { continue };
            if let Some(first) = seen.get(&p) {
                d.error(file, v.span(), format!("port {p} is listed twice in partition `{name}`"))
                    .related(file, first.clone(), "first listed here");
                continue;
            }
            seen.insert(p, v.span());
            partitions[i].net.listen.push(p);
        }
    }

    // Gateway routes.
    let mut upstream: HashMap<String, (String, Span<usize>)> = HashMap::new();
    for (i, raw) in raws.iter().enumerate() {
        if raw.routes.is_empty() {
            continue;
        }
        let gw = names[i].clone();
        if raw.nic.is_none() {
            d.error(file, raw.routes[0].span(), format!("partition `{gw}` has `routes` but no `nic`"))
                .help("a gateway owns the NIC that receives the connections it routes: add a `nic`");
            continue;
        }
        if raw.routes.len() > MAX_ROUTES {
            d.error(file, raw.routes[MAX_ROUTES].span(), format!("partition `{gw}` has {} routes; the boot information holds at most {MAX_ROUTES}", raw.routes.len()));
        }
        let mut seen: HashMap<u16, Span<usize>> = HashMap::new();
        for rv in raw.routes.iter().take(MAX_ROUTES) {
            let r = rv.get_ref();
            let Some(p) = port(d, file, &r.port, "route port") else { continue };
            if let Some(first) = seen.get(&p) {
                d.error(file, r.port.span(), format!("port {p} is routed twice by gateway `{gw}`"))
                    .related(file, first.clone(), "first routed here");
                continue;
            }
            seen.insert(p, r.port.span());
            if partitions[i].net.listen.contains(&p) {
                d.error(file, r.port.span(), format!("gateway `{gw}` both listens on port {p} and routes it"))
                    .help("a port is served by the gateway itself (`listen`) or by one service partition (`routes`), not both");
                continue;
            }
            let to = r.to.get_ref();
            let Some(j) = names.iter().position(|n| n == to) else {
                let diag = d.error(file, r.to.span(), format!("route to unknown partition `{to}`")).label("no such partition");
                if let Some(best) = did_you_mean(to, names.iter().map(String::as_str)) {
                    diag.help(format!("did you mean `{best}`?"));
                }
                continue;
            };
            if j == i {
                d.error(file, r.to.span(), format!("gateway `{gw}` routes port {p} to itself"))
                    .help("list the port in `listen` instead");
                continue;
            }
            if partitions[j].net.nic.is_some() {
                d.error(file, r.to.span(), format!("route to partition `{to}`, which owns a NIC of its own"))
                    .help("a partition is reached through its own NIC or through a gateway, not both: forward to it directly, or remove its `nic`");
                continue;
            }
            if !partitions[j].net.listen.contains(&p) {
                d.error(file, r.to.span(), format!("gateway `{gw}` routes port {p} to partition `{to}`, which does not listen on it"))
                    .help(format!("add {p} to the `listen` list of partition `{to}`"));
                continue;
            }
            match upstream.get(to.as_str()) {
                Some((other, ospan)) if *other != gw => {
                    d.error(file, r.to.span(), format!("partition `{to}` is already behind gateway `{other}`"))
                        .related(file, ospan.clone(), "routed here")
                        .help("a service partition sits behind one gateway");
                    continue;
                }
                _ => {
                    upstream.insert(to.clone(), (gw.clone(), r.to.span()));
                }
            }
            // The link: one channel each way, named after the two ends.
            for (from, into) in [(&gw, to), (to, &gw)] {
                let cname = format!("{from}-{into}");
                match channels.iter().find(|c| c.name == cname) {
                    None => {
                        d.error(file, r.to.span(), format!("gateway route to `{to}` needs the channel `{cname}` from `{from}` to `{into}`"))
                            .help(format!("add:\n[[channel]]\nname = \"{cname}\"\nfrom = \"{from}\"\nto = \"{into}\"\nslot_size = 2048\nslots = 64\nnotify = \"poll\""));
                    }
                    Some(c) if c.from != *from || c.to != *into => {
                        d.error(file, r.to.span(), format!("channel `{cname}` of the route to `{to}` must go from `{from}` to `{into}`, not from `{}` to `{}`", c.from, c.to));
                    }
                    Some(c) if c.slot_size < LINK_MIN_SLOT_SIZE => {
                        d.error(file, r.to.span(), format!("channel `{cname}` has {}-byte slots; a gateway link sends {LINK_MIN_SLOT_SIZE}-byte frames", c.slot_size))
                            .help(format!("use slot_size = {LINK_MIN_SLOT_SIZE}"));
                    }
                    Some(c) if c.slots < LINK_MIN_SLOTS => {
                        d.error(file, r.to.span(), format!("channel `{cname}` has {} slots; a gateway link needs at least {LINK_MIN_SLOTS}", c.slots))
                            .help("use slots = 64");
                    }
                    Some(_) => {}
                }
            }
            partitions[i].net.routes.push(Route { port: p, to: to.clone() });
        }
    }
    for (to, (gw, _)) in &upstream {
        if let Some(p) = partitions.iter_mut().find(|p| &p.name == to) {
            p.net.upstream = Some(gw.clone());
        }
    }
    // A partition that listens needs a way in.
    for (i, raw) in raws.iter().enumerate() {
        let n = &partitions[i].net;
        if let (Some(first), None, None) = (raw.listen.first(), &n.nic, &n.upstream) {
            d.error(file, first.span(), format!("partition `{}` listens on port {} but has no network", names[i], first.get_ref()))
                .help("give it a `nic`, or route the port to it from a gateway partition's `routes`");
        }
    }

    // Forwards.
    let mut out = Vec::new();
    let mut hosts: HashMap<u16, Span<usize>> = HashMap::new();
    for f in forwards {
        let (Some(hv), Some(tv), Some(pv)) = (&f.host, &f.to, &f.port) else { continue };
        let Some(host) = port(d, file, hv, "host port") else { continue };
        if let Some(first) = hosts.get(&host) {
            d.error(file, hv.span(), format!("host port {host} is forwarded twice"))
                .related(file, first.clone(), "first forwarded here")
                .help("each host port reaches one partition port");
            continue;
        }
        hosts.insert(host, hv.span());
        let Some(p) = port(d, file, pv, "port") else { continue };
        let to = tv.get_ref();
        let Some(j) = names.iter().position(|n| n == to) else {
            let diag = d.error(file, tv.span(), format!("forward to unknown partition `{to}`")).label("no such partition");
            if let Some(best) = did_you_mean(to, names.iter().map(String::as_str)) {
                diag.help(format!("did you mean `{best}`?"));
            }
            continue;
        };
        let net = &partitions[j].net;
        let nic_owner = if net.nic.is_some() {
            if !net.listen.contains(&p) && !net.routes.iter().any(|r| r.port == p) {
                d.error(file, pv.span(), format!("forward to port {p} of partition `{to}`, which neither listens on it nor routes it"))
                    .help(format!("add {p} to the `listen` of partition `{to}`, or a route for it"));
                continue;
            }
            to.clone()
        } else if let Some(gw) = &net.upstream {
            let gwp = partitions.iter().find(|x| &x.name == gw);
            if !gwp.is_some_and(|g| g.net.routes.iter().any(|r| r.port == p && r.to == *to)) {
                d.error(file, pv.span(), format!("forward to port {p} of partition `{to}`, but its gateway `{gw}` does not route port {p} to it"))
                    .help(format!("add `{{ port = {p}, to = \"{to}\" }}` to the routes of `{gw}`"));
                continue;
            }
            gw.clone()
        } else {
            d.error(file, tv.span(), format!("forward to partition `{to}`, which has no network"))
                .help(format!("give `{to}` a `nic` and `listen = [{p}]`, or route port {p} to it from a gateway"));
            continue;
        };
        let protocol = f.protocol.as_ref().map(|v| match v.get_ref() {
            ProtocolName::Http => Protocol::Http,
            ProtocolName::Redis => Protocol::Redis,
            ProtocolName::Kafka => Protocol::Kafka,
            ProtocolName::Postgres => Protocol::Postgres,
            ProtocolName::Tcp => Protocol::Tcp,
        });
        out.push(Forward { host, to: to.clone(), port: p, nic_owner, protocol });
    }
    out
}

/// `hostfwd` and device arguments for QEMU's user-mode networking: one
/// isolated network (`restrict=on`: the guest reaches neither the host nor
/// anything beyond it; only the forwards reach the guest) per NIC.
pub fn qemu_args(partitions: &[Partition], forwards: &[Forward]) -> Vec<String> {
    let mut args = Vec::new();
    for p in partitions {
        let Some(nic) = &p.net.nic else { continue };
        let net = subnet(nic.address, nic.prefix_len).0;
        let host = nic.router.unwrap_or(Ipv4Addr::from(net + 2));
        let mut netdev = format!("user,id=net-{},restrict=on,net={}/{},host={host}", p.name, Ipv4Addr::from(net), nic.prefix_len);
        for f in forwards.iter().filter(|f| f.nic_owner == p.name) {
            netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{}-{}:{}", f.host, nic.address, f.port));
        }
        let mac = nic.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        args.extend([
            "-netdev".to_owned(),
            netdev,
            "-device".to_owned(),
            format!("virtio-net-device,netdev=net-{},bus={},mac={mac}", p.name, nic.qemu_bus),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use crate::{load_str, CheckContext, NicMode};

    const TWO_NICS_AND_A_DISK: &str = r#"
version = 1
board = "qemu-virt-aarch64"
[[partition]]
name = "disk"
cores = [0]
ram = "8 MiB"
guest = "disk"
on_fault = "stop"
devices = ["virtio0", "virtio1", "virtio2", "virtio3", "virtio4", "virtio5", "virtio6", "virtio7"]
dma = "trusted"
[[partition]]
name = "web"
cores = [1]
ram = "8 MiB"
guest = "web"
on_fault = "stop"
nic = { address = "10.0.2.15/24", router = "10.0.2.2" }
dma = "trusted"
listen = [80]
[[partition]]
name = "gw"
cores = [2]
ram = "8 MiB"
guest = "gateway"
on_fault = "stop"
nic = { address = "192.168.5.9/24", mode = "interrupt" }
dma = "trusted"
routes = [{ port = 8000, to = "svc" }]
[[partition]]
name = "svc"
cores = [3]
ram = "8 MiB"
guest = "web"
on_fault = "stop"
listen = [8000]
[[channel]]
name = "gw-svc"
from = "gw"
to = "svc"
slot_size = 2048
slots = 16
notify = "poll"
[[channel]]
name = "svc-gw"
from = "svc"
to = "gw"
slot_size = 2048
slots = 16
notify = "poll"
[[forward]]
host = 18080
to = "web"
port = 80
[[forward]]
host = 18000
to = "svc"
port = 8000
"#;

    #[test]
    fn a_forward_names_its_protocol_or_gets_it_from_the_port() {
        use crate::Protocol;
        let sys = load_str("net.toml", TWO_NICS_AND_A_DISK, &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
        // No `protocol` key: port 80 and port 8000 are HTTP's.
        assert_eq!(sys.forwards.iter().map(|f| (f.protocol, Protocol::of_forward(f))).collect::<Vec<_>>(), [(None, Protocol::Http), (None, Protocol::Http)]);
        let named = TWO_NICS_AND_A_DISK.replacen("port = 80\n", "port = 80\nprotocol = \"redis\"\n", 1);
        let sys = load_str("net.toml", &named, &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!((sys.forwards[0].protocol, Protocol::of_forward(&sys.forwards[0])), (Some(Protocol::Redis), Protocol::Redis));
        let mut f = sys.forwards[1].clone();
        for (port, want) in [(6379, Protocol::Redis), (9092, Protocol::Kafka), (5432, Protocol::Postgres), (8080, Protocol::Http), (7000, Protocol::Tcp)] {
            f.port = port;
            assert_eq!(Protocol::of_forward(&f), want, "port {port}");
        }
        let bad = TWO_NICS_AND_A_DISK.replacen("port = 80\n", "port = 80\nprotocol = \"gopher\"\n", 1);
        let err = load_str("net.toml", &bad, &CheckContext::default()).expect_err("an unknown protocol").to_string();
        assert!(err.contains("gopher") && err.contains("net.toml:"), "{err}");
    }

    #[test]
    fn nics_get_pages_of_their_own_and_forwards_resolve_to_the_nic_owner() {
        let sys = load_str("net.toml", TWO_NICS_AND_A_DISK, &CheckContext::default()).unwrap_or_else(|d| panic!("{d}"));
        let web = sys.partition("web").unwrap();
        let nic = web.net.nic.as_ref().unwrap();
        // virtio0..7 (page 0xa000000) belong to `disk`: the first NIC takes the next page.
        assert_eq!((nic.device.as_str(), nic.qemu_bus.as_str()), ("virtio15", "virtio-mmio-bus.15"));
        assert_eq!(web.devices, (8..16).map(|i| format!("virtio{i}")).collect::<Vec<_>>());
        assert!(web.dma_trusted);
        let gw = sys.partition("gw").unwrap();
        let gnic = gw.net.nic.as_ref().unwrap();
        assert_eq!(gnic.device, "virtio23");
        assert_eq!(gnic.mode, NicMode::Interrupt);
        assert_ne!(gnic.mac, nic.mac);
        assert_eq!(sys.partition("svc").unwrap().net.upstream.as_deref(), Some("gw"));
        assert_eq!(sys.forwards[1].nic_owner, "gw");

        let abi = sys.partition("svc").unwrap().net.to_abi();
        assert_eq!(abi.mode, hallows_abi::net_mode::GATEWAY);
        assert_eq!(&abi.upstream[..3], b"gw\0");
        assert_eq!((abi.listen_count, abi.listen[0]), (1, 8000));
        let abi = gw.net.to_abi();
        assert_eq!((abi.mode, abi.prefix_len, abi.address), (hallows_abi::net_mode::INTERRUPT, 24, [192, 168, 5, 9]));
        assert_eq!((abi.route_count, abi.routes[0].port, &abi.routes[0].to[..4]), (1, 8000, &b"svc\0"[..]));

        let args = super::qemu_args(&sys.partitions, &sys.forwards).join(" ");
        assert_eq!(
            args,
            "-netdev user,id=net-web,restrict=on,net=10.0.2.0/24,host=10.0.2.2,hostfwd=tcp:127.0.0.1:18080-10.0.2.15:80 \
             -device virtio-net-device,netdev=net-web,bus=virtio-mmio-bus.15,mac=02:48:41:4c:00:01 \
             -netdev user,id=net-gw,restrict=on,net=192.168.5.0/24,host=192.168.5.2,hostfwd=tcp:127.0.0.1:18000-192.168.5.9:8000 \
             -device virtio-net-device,netdev=net-gw,bus=virtio-mmio-bus.23,mac=02:48:41:4c:00:02"
        );
    }
}
