//! The Lua scripts, each with `lua/common.lua` in front, loaded once per replica.

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        concat!(include_str!("lua/common.lua"), include_str!($file))
    };
}

pub(super) struct Scripts {
    pub(super) push: Script,
    pub(super) replay: Script,
    pub(super) reserve: Script,
    pub(super) ack: Script,
    pub(super) retry: Script,
    pub(super) renew: Script,
    pub(super) reap: Script,
    pub(super) release: Script,
    pub(super) stats: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            push: Script::new(script!("lua/push.lua")),
            replay: Script::new(script!("lua/replay.lua")),
            reserve: Script::new(script!("lua/reserve.lua")),
            ack: Script::new(script!("lua/ack.lua")),
            retry: Script::new(script!("lua/retry.lua")),
            renew: Script::new(script!("lua/renew.lua")),
            reap: Script::new(script!("lua/reap.lua")),
            release: Script::new(script!("lua/release.lua")),
            stats: Script::new(script!("lua/stats.lua")),
        }
    }
}
