//! The gateway backend (mode `gateway`): the partition owns no NIC; the
//! gateway partition named in `boot.info().net.upstream` terminates TCP and
//! relays each connection over the channels `<gateway>-<self>` and
//! `<self>-<gateway>` (protocol: `guests/link`).
//!
//! Placeholder: the gateway engineer implements [`crate::backend::Backend`]
//! here and returns it from [`start`].

use alloc::boxed::Box;

use hallows_rt::Boot;

use crate::backend::Backend;
use crate::{Config, Error};

/// Starts the gateway client (spawning its channel pump) and returns it.
pub(crate) fn start(_boot: &Boot, _cfg: &Config) -> Result<Box<dyn Backend>, Error> {
    Err(Error::Unsupported)
}
