//! The actors of the simulation, viewers and publishers, and how each stamps the common fields of its
//! beacons.

use qoe_schemas::{Beacon, BeaconType, EndReason, ErrorStage, Network, Resolver};
use rand::rngs::StdRng;
use rand::Rng;

use crate::model::{self, Catalog, ARM_CONTROL, ARM_TREATMENT, RESOLVERS};

/// Where a viewer is in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewerState {
    /// The slot is unused.
    Free,
    /// Joined the room, player not started yet.
    Joined,
    /// Player started, no first frame yet.
    Starting,
    /// First frame rendered, heartbeats running.
    Playing,
    /// Play session over, room not left yet.
    Ended,
    /// Left the room and will come back (after the publisher jitter).
    Away,
}

/// How a play session turns out, decided when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Reaches the first frame and plays until the viewer leaves.
    Plays,
    /// The viewer gives up before the first frame (exit before video start).
    GivesUp,
    /// A fatal technical error before the first frame.
    TechnicalError(ErrorStage),
    /// A business refusal, by index into [`model::BUSINESS_ERROR_CODES`].
    BusinessError(usize),
}

/// The parts of the time to first frame, ms.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct FirstFrameTiming {
    pub(crate) dns_ms: u64,
    pub(crate) connect_ms: u64,
    pub(crate) first_packet_ms: u64,
    pub(crate) first_frame_ms: u64,
    pub(crate) rtt_ms: u64,
}

/// A stall the publisher jitter forces on a viewer, counted in the interval that contains `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForcedStall {
    pub(crate) at: u64,
    pub(crate) stall_ms: u64,
}

/// Who an actor is, on what device and network, through which CDN: the fields every beacon of the
/// actor carries. Catalog strings are kept as indices and cloned into beacons.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) room: usize,
    pub(crate) platform: usize,
    pub(crate) os: usize,
    pub(crate) model: usize,
    pub(crate) app_version: usize,
    pub(crate) network: Network,
    pub(crate) isp: usize,
    pub(crate) region: usize,
    pub(crate) cdn: usize,
}

impl Profile {
    /// A beacon of session `session_id` with this profile's fields and `edge_ip` set.
    fn beacon(
        &self,
        catalog: &Catalog,
        kind: BeaconType,
        ts: u64,
        session_id: &str,
        seq: u64,
        edge_ip: &str,
    ) -> Beacon {
        let platform = &catalog.platforms[self.platform];
        Beacon {
            v: 1,
            kind,
            ts,
            session_id: session_id.to_string(),
            seq,
            room_id: catalog.rooms[self.room].clone(),
            platform: platform.platform,
            user_id: Some(self.user_id.clone()),
            device_id: Some(self.device_id.clone()),
            app_version: Some(catalog.app_versions[self.app_version].clone()),
            os: Some(platform.os[self.os].clone()),
            device_model: Some(platform.models[self.model].clone()),
            network: Some(self.network),
            isp: Some(catalog.isps[self.isp].clone()),
            region: Some(catalog.regions[self.region].clone()),
            cdn: Some(catalog.cdns[self.cdn].name.clone()),
            edge_ip: Some(edge_ip.to_string()),
            ..Beacon::default()
        }
    }
}

/// One viewer: a stable profile (device, network, CDN, experiment arm) and the state of its current
/// play session. Catalog strings are kept as indices and cloned into beacons.
#[derive(Debug)]
pub(crate) struct Viewer {
    /// Bumped whenever the queued events of this slot become stale.
    pub(crate) generation: u32,
    pub(crate) state: ViewerState,
    pub(crate) session_id: String,
    pub(crate) next_seq: u64,
    pub(crate) profile: Profile,
    pub(crate) edge: usize,
    pub(crate) resolver: Resolver,
    pub(crate) arm: usize,
    pub(crate) rtt_median_ms: f64,
    pub(crate) bitrate_kbps: u64,
    pub(crate) frame_rate: f64,

    pub(crate) outcome: Outcome,
    /// Planned time from first frame to leaving, ms.
    pub(crate) watch_time_ms: u64,
    pub(crate) timing: FirstFrameTiming,
    pub(crate) first_frame_seen: bool,
    pub(crate) last_heartbeat_at: u64,
    pub(crate) heartbeats_sent: u64,
    pub(crate) end_at: u64,
    pub(crate) end_reason: EndReason,
    pub(crate) forced_stall: Option<ForcedStall>,
    pub(crate) rejoin: bool,
}

impl Viewer {
    /// Draws a new viewer profile for `room`; the session fields are set by the caller.
    pub(crate) fn sample(catalog: &Catalog, rng: &mut StdRng, room: usize, user_population: u64) -> Viewer {
        let platform = catalog.pick_platform(rng);
        let profile = &catalog.platforms[platform];
        let os = rng.random_range(0..profile.os.len());
        let device_model = rng.random_range(0..profile.models.len());
        let app_version = catalog.pick_app_version(rng);
        let network = model::pick_from(rng, profile.networks);
        let cdn = catalog.pick_cdn(rng);
        let edge = rng.random_range(0..catalog.cdns[cdn].edges.len());
        let resolver = model::pick_from(rng, RESOLVERS);
        let arm = if rng.random_bool(0.5) {
            ARM_TREATMENT
        } else {
            ARM_CONTROL
        };
        let user_index = rng.random_range(0..user_population.max(1));
        let rtt_median_ms =
            model::network_rtt_median_ms(network) * catalog.cdns[cdn].rtt_factor * model::lognormal(rng, 1.0, 0.35);
        Viewer {
            generation: 0,
            state: ViewerState::Joined,
            session_id: String::new(),
            next_seq: 0,
            profile: Profile {
                user_id: format!("u-{user_index:07}"),
                device_id: format!("d-{user_index:07x}"),
                room,
                platform,
                os,
                model: device_model,
                app_version,
                network,
                isp: rng.random_range(0..catalog.isps.len()),
                region: rng.random_range(0..catalog.regions.len()),
                cdn,
            },
            edge,
            resolver,
            arm,
            rtt_median_ms,
            bitrate_kbps: model::network_bitrate_kbps(network),
            frame_rate: if rng.random_bool(0.8) { 30.0 } else { 25.0 },
            outcome: Outcome::Plays,
            watch_time_ms: 0,
            timing: FirstFrameTiming::default(),
            first_frame_seen: false,
            last_heartbeat_at: 0,
            heartbeats_sent: 0,
            end_at: 0,
            end_reason: EndReason::Exit,
            forced_stall: None,
            rejoin: false,
        }
    }

    /// A beacon of this viewer's current session with the common fields set and the next `seq`.
    pub(crate) fn beacon(&mut self, catalog: &Catalog, kind: BeaconType, ts: u64) -> Beacon {
        let seq = self.next_seq;
        self.next_seq += 1;
        let edge_ip = &catalog.cdns[self.profile.cdn].edges[self.edge];
        Beacon {
            exp: Some(catalog.arms[self.arm].clone()),
            ..self.profile.beacon(catalog, kind, ts, &self.session_id, seq, edge_ip)
        }
    }
}

/// One room's publisher: a single push session that lasts the whole simulation.
#[derive(Debug)]
pub(crate) struct Publisher {
    pub(crate) session_id: String,
    pub(crate) next_seq: u64,
    pub(crate) profile: Profile,
    pub(crate) origin: usize,
    pub(crate) capture: usize,
    pub(crate) encoder: usize,
    pub(crate) cpu_base_pct: f64,
    pub(crate) mem_base_mb: f64,
    pub(crate) rtt_median_ms: f64,
    pub(crate) last_heartbeat_at: u64,
}

/// Catalog platform indices publishers use (android, ios, pc) and their shares.
const PUBLISHER_PLATFORMS: &[(usize, f64)] = &[(0, 0.5), (1, 0.35), (3, 0.15)];

impl Publisher {
    /// Draws the publisher of `room`; its session id is `p-<seed hex>-<room number>`.
    pub(crate) fn sample(catalog: &Catalog, rng: &mut StdRng, seed: u64, room: usize) -> Publisher {
        let platform = model::pick_from(rng, PUBLISHER_PLATFORMS);
        let profile = &catalog.platforms[platform];
        let encoder = match platform {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        let network = model::pick_publisher_network(rng);
        let cdn = catalog.pick_cdn(rng);
        let room_number = room + 1;
        Publisher {
            session_id: format!("p-{seed:x}-{room_number:04}"),
            next_seq: 0,
            profile: Profile {
                user_id: format!("host-{room_number:04}"),
                device_id: format!("d-host-{room_number:04}"),
                room,
                platform,
                os: rng.random_range(0..profile.os.len()),
                model: rng.random_range(0..profile.models.len()),
                app_version: catalog.pick_app_version(rng),
                network,
                isp: rng.random_range(0..catalog.isps.len()),
                region: rng.random_range(0..catalog.regions.len()),
                cdn,
            },
            origin: rng.random_range(0..catalog.cdns[cdn].origins.len()),
            capture: rng.random_range(0..model::CAPTURE_SETUPS.len()),
            encoder,
            cpu_base_pct: model::uniform_f64(rng, 20.0, 45.0),
            mem_base_mb: model::uniform_f64(rng, 250.0, 600.0),
            rtt_median_ms: model::network_rtt_median_ms(network) * model::lognormal(rng, 1.0, 0.3),
            last_heartbeat_at: 0,
        }
    }

    /// A beacon of this push session with the common fields set and the next `seq`.
    pub(crate) fn beacon(&mut self, catalog: &Catalog, kind: BeaconType, ts: u64) -> Beacon {
        let seq = self.next_seq;
        self.next_seq += 1;
        let origin_ip = &catalog.cdns[self.profile.cdn].origins[self.origin];
        self.profile.beacon(catalog, kind, ts, &self.session_id, seq, origin_ip)
    }
}
