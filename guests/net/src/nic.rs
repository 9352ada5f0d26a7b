//! The NIC backend: a virtio-net device and the smoltcp stack.

use alloc::boxed::Box;

use hallows_rt::Boot;

use crate::backend::Backend;
use crate::{Config, Error};

pub(crate) fn start(_boot: &Boot, _cfg: &Config) -> Result<Box<dyn Backend>, Error> {
    Err(Error::Unsupported)
}
