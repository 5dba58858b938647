//! Configuration reloads (control's `Reload` messages): the keys publishers
//! and media viewers are checked with here (decision 004) and the billing
//! interval change without a restart; nothing else in the shard's
//! configuration does (listeners, ports, shards need one, and control says
//! so to the operator).

use super::Core;
use rts_common::config::{AuthSection, Config, DomainConfig, HooksConfig};
use std::sync::Arc;
use std::time::Instant;

/// The parts of one reload generation received so far.
#[derive(Default)]
pub(super) struct PendingReload {
    generation: u64,
    parts: u32,
    received: u32,
    auth: Option<AuthSection>,
    domains: Vec<DomainConfig>,
    billing_interval_s: Option<u32>,
    hooks: Option<HooksConfig>,
}

/// One `Reload` message.
pub(super) struct ReloadPart {
    pub generation: u64,
    pub part: u32,
    pub parts: u32,
    pub auth: AuthSection,
    pub domains: Vec<DomainConfig>,
    pub billing_interval_s: Option<u32>,
    pub hooks: HooksConfig,
}

impl Core {
    /// Part `part` of `parts` of reload `generation`. A part of a newer
    /// generation drops the parts of an older one (control sent another
    /// reload meanwhile); an older one is ignored.
    pub(super) fn handle_reload_part(&mut self, now: Instant, msg: ReloadPart) {
        let ReloadPart { generation, part, parts, auth, domains, billing_interval_s, hooks } = msg;
        let p = &mut self.reload;
        if generation < p.generation || generation <= self.reloaded || part >= parts {
            return;
        }
        if generation > p.generation {
            *p = PendingReload { generation, parts, ..Default::default() };
        }
        p.received += 1;
        p.auth = Some(auth);
        p.domains.extend(domains);
        p.billing_interval_s = billing_interval_s;
        p.hooks = Some(hooks);
        if p.received < p.parts {
            return;
        }
        let done = std::mem::take(&mut self.reload);
        self.reloaded = generation;
        let mut cfg: Config = (*self.cfg).clone();
        if let Some(a) = done.auth {
            cfg.auth = a;
        }
        cfg.domains = done.domains;
        if let Some(h) = done.hooks {
            cfg.hooks = h;
        }
        if let (Some(b), Some(i)) = (cfg.billing.as_mut(), done.billing_interval_s) {
            if b.interval_s != i {
                b.interval_s = i;
                let now_us = self.unix_us(now);
                self.usage.set_interval(i, now_us);
            }
        }
        tracing::info!(shard = self.id, generation, domains = cfg.domains.len(), "configuration reloaded");
        self.cfg = Arc::new(cfg);
        self.counters.reloads += 1;
    }
}
