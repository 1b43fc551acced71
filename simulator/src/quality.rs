//! Quality of service: how long the first frame takes, and the counters and gauges of one heartbeat
//! interval, for viewers and publishers. Every value respects the ranges and cross-field rules of
//! `qoe_schemas::fields` (parts of the first frame never exceed it, stalls never exceed the interval).

use qoe_schemas::{Beacon, Resolver};
use rand::rngs::StdRng;
use rand::Rng;

use crate::actors::{FirstFrameTiming, Publisher, Viewer};
use crate::model::{self, Catalog, CdnProfile, ARM_TREATMENT, CAPTURE_SETUPS, TREATMENT_STALL_FACTOR};

/// Cap on each part of the first frame, ms (the whole stays far below the 10-minute limit).
const PART_CAP_MS: u64 = 60_000;
/// The startup skip and speed-up window after the first frame, ms.
pub(crate) const STARTUP_WINDOW_MS: u64 = 10_000;

/// How the CDN stall incident changes a CDN while it lasts.
const INCIDENT_STALL_RATE_FACTOR: f64 = 8.0;
const INCIDENT_STALL_LENGTH_FACTOR: f64 = 2.5;
const INCIDENT_RTT_FACTOR: f64 = 1.8;
const INCIDENT_FIRST_PACKET_FACTOR: f64 = 1.6;

/// Draws the time to first frame of a viewer; `in_cdn_incident` slows the first packet down.
pub(crate) fn first_frame_timing(
    catalog: &Catalog,
    rng: &mut StdRng,
    viewer: &Viewer,
    in_cdn_incident: bool,
) -> FirstFrameTiming {
    let cdn = &catalog.cdns[viewer.profile.cdn];
    let incident_rtt = if in_cdn_incident { INCIDENT_RTT_FACTOR } else { 1.0 };
    let rtt = viewer.rtt_median_ms * incident_rtt * model::lognormal(rng, 1.0, 0.25);
    let dns = match viewer.resolver {
        // httpDNS usually resolved the edge ahead of time.
        Resolver::HttpDns if rng.random_bool(0.7) => model::uniform_f64(rng, 0.0, 3.0),
        Resolver::HttpDns => model::lognormal(rng, 25.0, 0.5),
        Resolver::LocalDns => model::lognormal(rng, 70.0, 0.6),
        Resolver::Cached => model::uniform_f64(rng, 0.0, 2.0),
    };
    let connect = rtt * model::uniform_f64(rng, 1.0, 1.6);
    let incident_first_packet = if in_cdn_incident {
        INCIDENT_FIRST_PACKET_FACTOR
    } else {
        1.0
    };
    let first_packet = rtt + model::lognormal(rng, cdn.first_packet_median_ms * incident_first_packet, 0.45);
    let render = model::lognormal(rng, catalog.platforms[viewer.profile.platform].render_median_ms, 0.4);

    let dns_ms = model::whole_ms(dns, PART_CAP_MS);
    let connect_ms = model::whole_ms(connect, PART_CAP_MS);
    let first_packet_ms = model::whole_ms(first_packet, PART_CAP_MS);
    let render_ms = model::whole_ms(render, PART_CAP_MS).max(1);
    FirstFrameTiming {
        dns_ms,
        connect_ms,
        first_packet_ms,
        first_frame_ms: dns_ms + connect_ms + first_packet_ms + render_ms,
        rtt_ms: model::whole_ms(rtt, 60_000),
    }
}

/// The interval counters shared by `play_heartbeat` and `play_end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlayCounters {
    pub(crate) interval_ms: u64,
    pub(crate) watch_ms: u64,
    pub(crate) stall_count: u64,
    pub(crate) stall_ms: u64,
    pub(crate) dropped_frames: u64,
}

impl PlayCounters {
    /// The counters of an interval that covers no time: a session that ended right at a heartbeat.
    pub(crate) const EMPTY: PlayCounters = PlayCounters {
        interval_ms: 0,
        watch_ms: 0,
        stall_count: 0,
        stall_ms: 0,
        dropped_frames: 0,
    };

    /// Writes the counters into a `play_heartbeat` or `play_end` beacon.
    pub(crate) fn apply(&self, beacon: &mut Beacon) {
        beacon.interval_ms = Some(self.interval_ms);
        beacon.watch_ms = Some(self.watch_ms);
        beacon.stall_count = Some(self.stall_count);
        beacon.stall_ms = Some(self.stall_ms);
        beacon.dropped_frames = Some(self.dropped_frames);
    }
}

/// Draws a Poisson count with a small mean (Knuth's method: cheap below a mean of a few).
fn small_poisson(rng: &mut StdRng, mean: f64) -> u64 {
    let limit = (-mean).exp();
    let mut product: f64 = rng.random();
    let mut count = 0;
    while product > limit && count < 50 {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

/// Draws the playback counters of `viewer` for the interval `from..to`, consuming a forced stall that
/// falls inside it.
pub(crate) fn play_counters(
    cdn: &CdnProfile,
    rng: &mut StdRng,
    viewer: &mut Viewer,
    from: u64,
    to: u64,
    in_cdn_incident: bool,
) -> PlayCounters {
    let interval_ms = (to - from).max(1);
    let arm_factor = if viewer.arm == ARM_TREATMENT {
        TREATMENT_STALL_FACTOR
    } else {
        1.0
    };
    let mut stalls_per_10s = cdn.stalls_per_10s * model::network_stall_factor(viewer.profile.network) * arm_factor;
    let mut stall_median_ms = cdn.stall_median_ms;
    if in_cdn_incident {
        stalls_per_10s *= INCIDENT_STALL_RATE_FACTOR;
        stall_median_ms *= INCIDENT_STALL_LENGTH_FACTOR;
    }
    let expected_stalls = stalls_per_10s * interval_ms as f64 / 10_000.0;
    let mut stall_count = small_poisson(rng, expected_stalls);
    let mut stall_ms: u64 = (0..stall_count)
        .map(|_| model::whole_ms(model::lognormal(rng, stall_median_ms, 0.7), interval_ms))
        .sum();
    if let Some(forced) = viewer.forced_stall {
        if forced.at < to {
            stall_count += 1;
            stall_ms += forced.stall_ms;
            viewer.forced_stall = None;
        }
    }
    let stall_ms = stall_ms.min(interval_ms);
    let dropped_frames = if stall_count > 0 {
        model::uniform_u64(rng, 5, 60)
    } else if rng.random_bool(0.25) {
        model::uniform_u64(rng, 1, 6)
    } else {
        0
    };
    PlayCounters {
        interval_ms,
        watch_ms: interval_ms - stall_ms,
        stall_count,
        stall_ms,
        dropped_frames,
    }
}

/// Fills the gauges of a `play_heartbeat` from its counters.
pub(crate) fn play_gauges(
    rng: &mut StdRng,
    viewer: &Viewer,
    counters: &PlayCounters,
    in_cdn_incident: bool,
    beacon: &mut Beacon,
) {
    let stalled = counters.stall_count > 0;
    let bitrate_kbps = if stalled {
        viewer.bitrate_kbps * 3 / 5
    } else {
        viewer.bitrate_kbps
    };
    let buffer_ms = if stalled {
        model::uniform_u64(rng, 100, 1_200)
    } else {
        model::uniform_u64(rng, 1_500, 4_500)
    };
    let playing_share = counters.watch_ms as f64 / counters.interval_ms as f64;
    let fps = viewer.frame_rate * playing_share * model::uniform_f64(rng, 0.97, 1.0);
    let incident_rtt = if in_cdn_incident { INCIDENT_RTT_FACTOR } else { 1.0 };
    let rtt = viewer.rtt_median_ms * incident_rtt * model::lognormal(rng, 1.0, 0.2);
    beacon.bitrate_kbps = Some(bitrate_kbps);
    beacon.buffer_ms = Some(buffer_ms);
    beacon.latency_ms = Some(buffer_ms + model::uniform_u64(rng, 800, 2_000));
    beacon.fps = Some(model::one_decimal(fps));
    beacon.rtt_ms = Some(model::whole_ms(rtt, 60_000));
}

/// Sets the once-per-session startup skip and speed-up: media dropped and media played faster in the
/// first 10 s after the first frame. CDNs that send too much data at start make players skip more.
pub(crate) fn startup_metrics(cdn: &CdnProfile, rng: &mut StdRng, beacon: &mut Beacon) {
    let skip_ms = if rng.random_bool(cdn.startup_skip_zero_share) {
        0
    } else {
        model::whole_ms(
            model::lognormal(rng, cdn.startup_skip_median_ms, 0.8),
            STARTUP_WINDOW_MS,
        )
    };
    let speedup_ms = if rng.random_bool(0.5) {
        0
    } else {
        model::whole_ms(model::lognormal(rng, 150.0, 0.6), STARTUP_WINDOW_MS)
    };
    beacon.startup_skip_ms = Some(skip_ms);
    beacon.startup_speedup_ms = Some(speedup_ms);
}

/// The push counters of one interval; `jitter_overlap_ms` is how much of it the publisher's network
/// jittered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PushCounters {
    pub(crate) interval_ms: u64,
    pub(crate) stall_count: u64,
    pub(crate) stall_ms: u64,
    pub(crate) dropped_frames: u64,
}

impl PushCounters {
    /// The counters of an interval that covers no time: a push that ended right at a heartbeat.
    pub(crate) const EMPTY: PushCounters = PushCounters {
        interval_ms: 0,
        stall_count: 0,
        stall_ms: 0,
        dropped_frames: 0,
    };

    /// Writes the counters into a `push_heartbeat` or `push_end` beacon.
    pub(crate) fn apply(&self, beacon: &mut Beacon) {
        beacon.interval_ms = Some(self.interval_ms);
        beacon.stall_count = Some(self.stall_count);
        beacon.stall_ms = Some(self.stall_ms);
        beacon.dropped_frames = Some(self.dropped_frames);
    }
}

/// Draws the push counters of the interval `from..to`.
pub(crate) fn push_counters(rng: &mut StdRng, from: u64, to: u64, jitter_overlap_ms: u64) -> PushCounters {
    let interval_ms = (to - from).max(1);
    if jitter_overlap_ms == 0 {
        let dropped_frames = if rng.random_bool(0.2) {
            model::uniform_u64(rng, 1, 10)
        } else {
            0
        };
        return PushCounters {
            interval_ms,
            stall_count: 0,
            stall_ms: 0,
            dropped_frames,
        };
    }
    let stall_ms = model::whole_ms(
        jitter_overlap_ms as f64 * model::uniform_f64(rng, 0.3, 0.7),
        interval_ms,
    );
    PushCounters {
        interval_ms,
        stall_count: model::uniform_u64(rng, 2, 7),
        stall_ms,
        dropped_frames: model::uniform_u64(rng, 60, 400),
    }
}

/// Fills the gauges of a `push_heartbeat`: resources, encoder output and the bitrate controller.
pub(crate) fn push_gauges(rng: &mut StdRng, publisher: &Publisher, jittering: bool, beacon: &mut Beacon) {
    let (_, _, capture_fps, setup_kbps) = CAPTURE_SETUPS[publisher.capture];
    let cpu_pct = (publisher.cpu_base_pct + model::uniform_f64(rng, -5.0, 5.0)).clamp(1.0, 100.0);
    let mem_mb = publisher.mem_base_mb + model::uniform_f64(rng, -20.0, 20.0);
    let (target_kbps, output_share, encode_share, rtt) = if jittering {
        (
            setup_kbps as f64 * model::uniform_f64(rng, 0.3, 0.5),
            model::uniform_f64(rng, 0.2, 0.5),
            model::uniform_f64(rng, 0.6, 0.8),
            model::uniform_f64(rng, 400.0, 1_500.0),
        )
    } else {
        (
            setup_kbps as f64,
            model::uniform_f64(rng, 0.9, 1.02),
            model::uniform_f64(rng, 0.96, 1.0),
            publisher.rtt_median_ms * model::lognormal(rng, 1.0, 0.2),
        )
    };
    beacon.cpu_pct = Some(model::one_decimal(cpu_pct));
    beacon.mem_mb = Some(model::one_decimal(mem_mb));
    beacon.encode_fps = Some(model::one_decimal(capture_fps * encode_share));
    beacon.target_kbps = Some(target_kbps.round() as u64);
    beacon.output_kbps = Some((target_kbps * output_share).round() as u64);
    beacon.rtt_ms = Some(model::whole_ms(rtt, 60_000));
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn small_poisson_has_the_requested_mean() {
        let mut rng = StdRng::seed_from_u64(11);
        let draws = 200_000;
        let total: u64 = (0..draws).map(|_| small_poisson(&mut rng, 0.3)).sum();
        let mean = total as f64 / draws as f64;
        assert!((0.28..0.32).contains(&mean), "mean {mean}");
    }
}
