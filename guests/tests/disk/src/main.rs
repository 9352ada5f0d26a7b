//! virtio-blk guest, the same source on aarch64 (QEMU `virt`) and x86_64
//! (QEMU `microvm`): finds the block device among its assigned
//! virtio-mmio transports, checks that sectors 0..8 hold the test pattern
//! (byte `j` of sector `i` is `(i * 7 + j) % 251`), writes the reverse
//! pattern (`(i * 13 + j) % 241`) to sectors 8..16, reads it back, and
//! waits for the device's interrupt to have arrived (delivered to this
//! partition only). With `panic_first` in its boot arguments it then
//! panics on its first run (for a restart policy to start it again: the
//! hypervisor resets the device and re-routes its interrupt).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use hallows_rt::{println, Boot};

hallows_rt::entry!(main);

fn main(boot: &Boot) -> u64 {
    use core::time::Duration;

    use hallows_rt::virtio::virtio_drivers::device::blk::{VirtIOBlk, SECTOR_SIZE};
    use hallows_rt::virtio::virtio_drivers::transport::DeviceType;
    use hallows_rt::virtio::{self, Hal};

    let Some(dev) = virtio::transports(boot).into_iter().find(|d| d.device_type == DeviceType::Block) else {
        println!("no virtio block device");
        return 1;
    };
    let base = dev.info.base;
    println!("virtio-blk at {base:#x}, interrupt {}", dev.info.irq);
    let mut blk = match VirtIOBlk::<Hal, _>::new(dev.transport) {
        Ok(b) => b,
        Err(e) => {
            println!("virtio-blk init failed: {e:?}");
            return 1;
        }
    };
    println!("capacity {} sectors", blk.capacity());
    let mut buf = [0u8; SECTOR_SIZE];
    for i in 0..8usize {
        if let Err(e) = blk.read_blocks(i, &mut buf) {
            println!("read of sector {i} failed: {e:?}");
            return 1;
        }
        if let Some(j) = (0..SECTOR_SIZE).find(|&j| buf[j] != ((i * 7 + j) % 251) as u8) {
            println!("sector {i} byte {j} is {:#x}: not the pattern", buf[j]);
            return 1;
        }
    }
    println!("read the pattern from sectors 0..8");
    for i in 8..16usize {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = ((i * 13 + j) % 241) as u8;
        }
        if let Err(e) = blk.write_blocks(i, &buf) {
            println!("write of sector {i} failed: {e:?}");
            return 1;
        }
    }
    blk.flush().ok();
    let mut back = [0u8; SECTOR_SIZE];
    if blk.read_blocks(12, &mut back).is_err() || back.iter().enumerate().any(|(j, &b)| b != ((12 * 13 + j) % 241) as u8) {
        println!("read-back of sector 12 differs");
        return 1;
    }
    println!("wrote sectors 8..16");
    // The completions raised the device's interrupt; IRQs open while idle.
    let irqs = hallows_rt::task::run(boot, async move {
        for _ in 0..100 {
            if virtio::interrupts(base) > 0 {
                break;
            }
            hallows_rt::time::sleep(Duration::from_millis(1)).await;
        }
        virtio::interrupts(base)
    });
    println!("device interrupts taken: {}", if irqs > 0 { "yes" } else { "none" });
    if boot.has("panic_first") && boot.restart_count() == 0 {
        panic!("first run done; panicking on purpose (panic_first)");
    }
    (irqs == 0) as u64
}
