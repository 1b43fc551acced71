//! The discrete-event engine behind [`crate::generate`]: a time-ordered queue of viewer and publisher
//! steps, each of which emits at most one beacon and schedules what comes next.
//!
//! Events are ordered by `(ts, insertion order)` and every random number comes from one seeded
//! [`StdRng`] drawn in event order, so the stream is a pure function of the config.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use qoe_schemas::{Beacon, BeaconType, EndReason, ErrorCategory, ErrorStage, Family};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::actors::{ForcedStall, Outcome, Publisher, Viewer, ViewerState};
use crate::incidents::{incidents, IncidentKind};
use crate::model::{self, Catalog, BUSINESS_ERROR_CODES, SOFT_ERROR_CODES};
use crate::quality::{self, STARTUP_WINDOW_MS};
use crate::SimConfig;

/// Median planned watch time, ms, and the log-normal shape around it.
const WATCH_MEDIAN_MS: f64 = 300_000.0;
const WATCH_SIGMA: f64 = 1.0;
/// Watch times are kept within these bounds, ms.
const WATCH_MIN_MS: u64 = 3_000;
const WATCH_MAX_MS: u64 = 6 * 3_600_000;
/// Time from joining a room to the end of the session that is not watch time, on average, ms.
const SESSION_OVERHEAD_MS: f64 = 2_000.0;

/// Shares of sessions that fail before the first frame.
const BUSINESS_ERROR_SHARE: f64 = 0.008;
const TECHNICAL_ERROR_SHARE: f64 = 0.015;
const GIVE_UP_SHARE: f64 = 0.02;
/// A first frame slower than this makes most viewers give up.
const SLOW_FIRST_FRAME_MS: u64 = 4_000;
const SLOW_FIRST_FRAME_GIVE_UP_SHARE: f64 = 0.6;
/// Chance that a heartbeat interval contains a non-fatal error.
const SOFT_ERROR_SHARE: f64 = 0.002;
/// Share of the jitter room's viewers that leave and re-join.
const JITTER_LEAVE_SHARE: f64 = 0.6;
/// A session whose end falls this soon after a heartbeat ends at the heartbeat itself, as a web
/// player's page-hide handler often fires right after a timer tick: its end beacon covers 0 ms
/// (`interval_ms: 0`, counters 0). Applies to publishers too. No random draw: the event stream of
/// sessions that end elsewhere is unchanged by it.
const END_AT_TICK_MS: u64 = 250;
/// Salt of the second random stream that picks deliberately invalid beacons.
const INVALID_STREAM_SALT: u64 = 0x1bad_beac_0115;

/// One scheduled step.
#[derive(Debug, Clone, Copy)]
struct Event {
    ts: u64,
    order: u64,
    action: Action,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    /// Reversed, so that the max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.ts, other.order).cmp(&(self.ts, self.order))
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// A new viewer arrives (Poisson process) and joins a room by popularity.
    Arrival,
    /// The publisher jitter begins in its room.
    JitterStart,
    /// A step of the viewer in `slot`, stale unless `generation` matches.
    Viewer {
        slot: u32,
        generation: u32,
        step: ViewerStep,
    },
    /// A step of a room's publisher.
    Publisher { room: u32, step: PublisherStep },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ViewerStep {
    PlayStart,
    FirstFrame,
    Heartbeat,
    SoftError,
    FatalError,
    PlayEnd,
    RoomLeave,
    Rejoin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublisherStep {
    Start,
    Heartbeat,
    End,
}

/// A window of simulated time affecting one CDN or room.
#[derive(Debug, Clone, Copy)]
struct Window {
    target: usize,
    start_ms: u64,
    end_ms: u64,
}

impl Window {
    fn contains(&self, ts: u64) -> bool {
        (self.start_ms..self.end_ms).contains(&ts)
    }

    fn overlap_ms(&self, from: u64, to: u64) -> u64 {
        to.min(self.end_ms).saturating_sub(from.max(self.start_ms))
    }
}

/// The deterministic beacon stream of one simulation, in non-decreasing `ts` order.
///
/// Built by [`crate::generate`]. Iterating is cheap (no IO, a heap operation and a dozen string clones
/// per beacon); the stream ends at `start_ms + duration_ms` or after `max_beacons`.
#[derive(Debug)]
pub struct BeaconStream {
    catalog: Catalog,
    rng: StdRng,
    invalid_rng: StdRng,
    invalid_fraction: f64,
    seed: u64,
    interval_ms: u64,
    end_ms: u64,
    max_beacons: Option<u64>,
    emitted: u64,
    queue: BinaryHeap<Event>,
    next_order: u64,
    viewers: Vec<Viewer>,
    free_slots: Vec<u32>,
    publishers: Vec<Publisher>,
    sessions_started: u64,
    user_population: u64,
    mean_arrival_gap_ms: f64,
    next_arrival_at: f64,
    /// Heartbeat number (1-based) whose interval covers the 10 s mark after the first frame.
    startup_heartbeat: u64,
    cdn_incident: Option<Window>,
    jitter: Option<Window>,
}

impl BeaconStream {
    /// Sets up the world, the publishers, the viewers already watching at `start_ms` (when
    /// `warm_start`) and the first arrival. Out-of-range settings are clamped (see
    /// [`SimConfig::validate`]).
    pub(crate) fn new(config: &SimConfig) -> BeaconStream {
        let catalog = Catalog::new(config.rooms);
        let interval_ms = config.heartbeat_interval_ms.clamp(1_000, 600_000);
        let start_ms = config.start_ms;
        let end_ms = start_ms.saturating_add(config.duration_ms);
        let viewers = config.viewers as f64;
        let mean_watch_ms = WATCH_MEDIAN_MS * (WATCH_SIGMA * WATCH_SIGMA / 2.0).exp();
        let mean_arrival_gap_ms = if viewers > 0.0 {
            (mean_watch_ms + SESSION_OVERHEAD_MS) / viewers
        } else {
            f64::INFINITY
        };
        let window = |kind: IncidentKind| incidents(config).into_iter().find(|incident| incident.kind == kind);
        let cdn_incident = window(IncidentKind::CdnStall).and_then(|incident| {
            let cdn = catalog.cdn_index(incident.cdn.as_deref()?)?;
            Some(Window {
                target: cdn,
                start_ms: incident.start_ms,
                end_ms: incident.end_ms,
            })
        });
        let jitter = window(IncidentKind::PublisherJitter).map(|incident| Window {
            target: 0,
            start_ms: incident.start_ms,
            end_ms: incident.end_ms,
        });
        let mut stream = BeaconStream {
            catalog,
            rng: StdRng::seed_from_u64(config.seed),
            invalid_rng: StdRng::seed_from_u64(config.seed ^ INVALID_STREAM_SALT),
            invalid_fraction: config.invalid_fraction.clamp(0.0, 1.0),
            seed: config.seed,
            interval_ms,
            end_ms,
            max_beacons: config.max_beacons,
            emitted: 0,
            queue: BinaryHeap::with_capacity(config.viewers + config.rooms + 16),
            next_order: 0,
            viewers: Vec::with_capacity(config.viewers + config.viewers / 4),
            free_slots: Vec::new(),
            publishers: Vec::with_capacity(config.rooms),
            sessions_started: 0,
            user_population: (config.viewers as u64 * 20).max(1_000),
            mean_arrival_gap_ms,
            next_arrival_at: start_ms as f64,
            startup_heartbeat: STARTUP_WINDOW_MS.div_ceil(interval_ms).max(1),
            cdn_incident,
            jitter,
        };

        for room in 0..stream.catalog.rooms.len() {
            let publisher = Publisher::sample(&stream.catalog, &mut stream.rng, config.seed, room);
            stream.publishers.push(publisher);
            stream.schedule(
                start_ms,
                Action::Publisher {
                    room: room as u32,
                    step: PublisherStep::Start,
                },
            );
        }
        if config.warm_start {
            for _ in 0..config.viewers {
                stream.spawn_watching_viewer(start_ms);
            }
        }
        if let Some(jitter) = stream.jitter {
            stream.schedule(jitter.start_ms, Action::JitterStart);
        }
        stream.schedule_next_arrival();
        stream
    }

    /// Queues `action` at `ts`, unless it falls after the end of the simulation.
    fn schedule(&mut self, ts: u64, action: Action) {
        if ts > self.end_ms {
            return;
        }
        self.queue.push(Event {
            ts,
            order: self.next_order,
            action,
        });
        self.next_order += 1;
    }

    fn schedule_viewer(&mut self, slot: usize, ts: u64, step: ViewerStep) {
        let generation = self.viewers[slot].generation;
        self.schedule(
            ts,
            Action::Viewer {
                slot: slot as u32,
                generation,
                step,
            },
        );
    }

    fn schedule_next_arrival(&mut self) {
        if !self.mean_arrival_gap_ms.is_finite() {
            return;
        }
        self.next_arrival_at += model::exponential(&mut self.rng, self.mean_arrival_gap_ms);
        if self.next_arrival_at > self.end_ms as f64 {
            return;
        }
        self.schedule(self.next_arrival_at as u64, Action::Arrival);
    }

    /// Puts a new viewer of `room` into a free slot.
    fn spawn_viewer(&mut self, room: usize) -> usize {
        let viewer = Viewer::sample(&self.catalog, &mut self.rng, room, self.user_population);
        match self.free_slots.pop() {
            Some(slot) => {
                let slot = slot as usize;
                let generation = self.viewers[slot].generation;
                self.viewers[slot] = Viewer { generation, ..viewer };
                slot
            }
            None => {
                self.viewers.push(viewer);
                self.viewers.len() - 1
            }
        }
    }

    fn new_session_id(&mut self) -> String {
        self.sessions_started += 1;
        format!("v-{:x}-{:x}", self.seed, self.sessions_started)
    }

    fn sample_watch_time(&mut self, median_ms: f64) -> u64 {
        let drawn = model::lognormal(&mut self.rng, median_ms, WATCH_SIGMA);
        model::whole_ms(drawn, WATCH_MAX_MS).max(WATCH_MIN_MS)
    }

    fn sample_end_reason(&mut self) -> EndReason {
        let draw: f64 = self.rng.random();
        if draw < 0.85 {
            EndReason::Exit
        } else if draw < 0.93 {
            EndReason::Background
        } else {
            EndReason::Switch
        }
    }

    fn sample_outcome(&mut self) -> Outcome {
        let draw: f64 = self.rng.random();
        if draw < BUSINESS_ERROR_SHARE {
            return Outcome::BusinessError(self.rng.random_range(0..BUSINESS_ERROR_CODES.len()));
        }
        if draw < BUSINESS_ERROR_SHARE + TECHNICAL_ERROR_SHARE {
            let stage = model::pick_from(
                &mut self.rng,
                &[
                    (ErrorStage::Dns, 0.3),
                    (ErrorStage::Connect, 0.35),
                    (ErrorStage::FirstPacket, 0.35),
                ],
            );
            return Outcome::TechnicalError(stage);
        }
        if draw < BUSINESS_ERROR_SHARE + TECHNICAL_ERROR_SHARE + GIVE_UP_SHARE {
            return Outcome::GivesUp;
        }
        Outcome::Plays
    }

    /// A viewer that has been watching since before `start_ms`: its age and remaining time come from
    /// the stationary (length-biased) watch-time distribution, so concurrency starts at its average.
    /// Its `room_join`, `play_start` and `first_frame` happened before the window; `seq` continues.
    fn spawn_watching_viewer(&mut self, now: u64) {
        let room = self.catalog.pick_room(&mut self.rng);
        let slot = self.spawn_viewer(room);
        let session_id = self.new_session_id();
        let length_biased_median = WATCH_MEDIAN_MS * (WATCH_SIGMA * WATCH_SIGMA).exp();
        let total_ms = self.sample_watch_time(length_biased_median);
        let age_ms = (total_ms as f64 * self.rng.random::<f64>()) as u64;
        let end_reason = self.sample_end_reason();
        let interval_ms = self.interval_ms;
        let viewer = &mut self.viewers[slot];
        let heartbeats_sent = age_ms / interval_ms;
        let first_frame_at = now.saturating_sub(age_ms);
        viewer.session_id = session_id;
        viewer.state = ViewerState::Playing;
        viewer.first_frame_seen = true;
        viewer.heartbeats_sent = heartbeats_sent;
        viewer.next_seq = 3 + heartbeats_sent;
        viewer.last_heartbeat_at = first_frame_at + heartbeats_sent * interval_ms;
        viewer.watch_time_ms = total_ms;
        viewer.end_at = now + (total_ms - age_ms);
        viewer.end_reason = end_reason;
        self.schedule_next_playing_step(slot, now);
    }

    /// Starts a new play session in `slot` at `ts`: a fresh session id, `room_join`, then `play_start`.
    fn begin_session(&mut self, slot: usize, ts: u64, allow_failures: bool) -> Beacon {
        let session_id = self.new_session_id();
        let outcome = if allow_failures {
            self.sample_outcome()
        } else {
            Outcome::Plays
        };
        let watch_time_ms = self.sample_watch_time(WATCH_MEDIAN_MS);
        let end_reason = self.sample_end_reason();
        let join_to_play_ms = model::uniform_u64(&mut self.rng, 150, 1_500);
        let viewer = &mut self.viewers[slot];
        viewer.session_id = session_id;
        viewer.next_seq = 0;
        viewer.state = ViewerState::Joined;
        viewer.outcome = outcome;
        viewer.watch_time_ms = watch_time_ms;
        viewer.end_reason = end_reason;
        viewer.first_frame_seen = false;
        viewer.heartbeats_sent = 0;
        viewer.forced_stall = None;
        viewer.rejoin = false;
        let beacon = viewer.beacon(&self.catalog, BeaconType::RoomJoin, ts);
        self.schedule_viewer(slot, ts + join_to_play_ms, ViewerStep::PlayStart);
        beacon
    }

    /// Queues the next heartbeat, or the end of the session if it comes first; maybe a non-fatal error
    /// in between. Never schedules before `now`.
    fn schedule_next_playing_step(&mut self, slot: usize, now: u64) {
        let viewer = &self.viewers[slot];
        let last_heartbeat_at = viewer.last_heartbeat_at;
        let next_heartbeat_at = last_heartbeat_at + self.interval_ms;
        let end_at = viewer.end_at;
        if self.rng.random_bool(SOFT_ERROR_SHARE) {
            let error_at = last_heartbeat_at + model::uniform_u64(&mut self.rng, 1, self.interval_ms);
            if error_at >= now && error_at < end_at {
                self.schedule_viewer(slot, error_at, ViewerStep::SoftError);
            }
        }
        if next_heartbeat_at <= end_at {
            self.schedule_viewer(slot, next_heartbeat_at, ViewerStep::Heartbeat);
        } else if end_at.saturating_sub(last_heartbeat_at) < END_AT_TICK_MS {
            self.schedule_viewer(slot, last_heartbeat_at.max(now), ViewerStep::PlayEnd);
        } else {
            self.schedule_viewer(slot, end_at.max(now), ViewerStep::PlayEnd);
        }
    }

    fn in_cdn_incident(&self, cdn: usize, ts: u64) -> bool {
        self.cdn_incident
            .is_some_and(|window| window.target == cdn && window.contains(ts))
    }

    fn handle(&mut self, event: Event) -> Option<Beacon> {
        match event.action {
            Action::Arrival => Some(self.on_arrival(event.ts)),
            Action::JitterStart => {
                self.on_jitter_start(event.ts);
                None
            }
            Action::Viewer { slot, generation, step } => {
                let slot = slot as usize;
                if self.viewers[slot].generation != generation {
                    return None;
                }
                self.on_viewer_step(slot, step, event.ts)
            }
            Action::Publisher { room, step } => Some(self.on_publisher_step(room as usize, step, event.ts)),
        }
    }

    fn on_arrival(&mut self, ts: u64) -> Beacon {
        self.schedule_next_arrival();
        let room = self.catalog.pick_room(&mut self.rng);
        let slot = self.spawn_viewer(room);
        self.begin_session(slot, ts, true)
    }

    /// Every viewer of the jitter room that is playing stalls within 5 s; about half of them leave a
    /// few seconds after the stall and re-join (same CDN) 3 to 30 s later.
    fn on_jitter_start(&mut self, ts: u64) {
        let Some(jitter) = self.jitter else {
            return;
        };
        for slot in 0..self.viewers.len() {
            let viewer = &self.viewers[slot];
            if viewer.state != ViewerState::Playing || viewer.profile.room != jitter.target {
                continue;
            }
            let stall_at = ts + model::uniform_u64(&mut self.rng, 0, 5_000);
            let stall_ms = model::uniform_u64(&mut self.rng, 1_500, 5_000);
            let leaves = self.rng.random_bool(JITTER_LEAVE_SHARE);
            let leave_at = stall_at + stall_ms + model::uniform_u64(&mut self.rng, 1_000, 10_000);
            let viewer = &mut self.viewers[slot];
            viewer.forced_stall = Some(ForcedStall { at: stall_at, stall_ms });
            if !leaves || leave_at >= viewer.end_at {
                continue;
            }
            viewer.end_at = leave_at;
            viewer.end_reason = EndReason::Exit;
            viewer.rejoin = true;
            viewer.generation += 1;
            self.schedule_next_playing_step(slot, ts);
        }
    }

    fn on_viewer_step(&mut self, slot: usize, step: ViewerStep, ts: u64) -> Option<Beacon> {
        match step {
            ViewerStep::PlayStart => Some(self.on_play_start(slot, ts)),
            ViewerStep::FirstFrame => Some(self.on_first_frame(slot, ts)),
            ViewerStep::Heartbeat => Some(self.on_heartbeat(slot, ts)),
            ViewerStep::SoftError => self.on_soft_error(slot, ts),
            ViewerStep::FatalError => Some(self.on_fatal_error(slot, ts)),
            ViewerStep::PlayEnd => Some(self.on_play_end(slot, ts)),
            ViewerStep::RoomLeave => Some(self.on_room_leave(slot, ts)),
            ViewerStep::Rejoin => Some(self.begin_session(slot, ts, false)),
        }
    }

    fn on_play_start(&mut self, slot: usize, ts: u64) -> Beacon {
        let in_incident = self.in_cdn_incident(self.viewers[slot].profile.cdn, ts);
        let timing = quality::first_frame_timing(&self.catalog, &mut self.rng, &self.viewers[slot], in_incident);
        let mut outcome = self.viewers[slot].outcome;
        let slow_start = timing.first_frame_ms > SLOW_FIRST_FRAME_MS;
        if outcome == Outcome::Plays && slow_start && self.rng.random_bool(SLOW_FIRST_FRAME_GIVE_UP_SHARE) {
            outcome = Outcome::GivesUp;
        }
        let (next_step, delay_ms) = match outcome {
            Outcome::Plays => (ViewerStep::FirstFrame, timing.first_frame_ms),
            Outcome::GivesUp => {
                let patience_ms = model::uniform_u64(&mut self.rng, 1_500, 8_000);
                let patience_ms = if slow_start {
                    patience_ms.min(timing.first_frame_ms - 1)
                } else {
                    patience_ms
                };
                (ViewerStep::PlayEnd, patience_ms)
            }
            Outcome::TechnicalError(stage) => (
                ViewerStep::FatalError,
                model::stage_timeout_ms(stage) + model::uniform_u64(&mut self.rng, 0, 500),
            ),
            Outcome::BusinessError(_) => (ViewerStep::FatalError, model::uniform_u64(&mut self.rng, 80, 400)),
        };
        let viewer = &mut self.viewers[slot];
        viewer.outcome = outcome;
        viewer.timing = timing;
        viewer.state = ViewerState::Starting;
        if outcome == Outcome::GivesUp {
            viewer.end_reason = EndReason::Exit;
        }
        let beacon = viewer.beacon(&self.catalog, BeaconType::PlayStart, ts);
        self.schedule_viewer(slot, ts + delay_ms, next_step);
        beacon
    }

    fn on_first_frame(&mut self, slot: usize, ts: u64) -> Beacon {
        let viewer = &mut self.viewers[slot];
        viewer.state = ViewerState::Playing;
        viewer.first_frame_seen = true;
        viewer.last_heartbeat_at = ts;
        viewer.end_at = ts + viewer.watch_time_ms;
        let timing = viewer.timing;
        let mut beacon = viewer.beacon(&self.catalog, BeaconType::FirstFrame, ts);
        beacon.first_frame_ms = Some(timing.first_frame_ms);
        beacon.dns_ms = Some(timing.dns_ms);
        beacon.connect_ms = Some(timing.connect_ms);
        beacon.first_packet_ms = Some(timing.first_packet_ms);
        beacon.resolver = Some(viewer.resolver);
        beacon.rtt_ms = Some(timing.rtt_ms);
        self.schedule_next_playing_step(slot, ts);
        beacon
    }

    fn on_heartbeat(&mut self, slot: usize, ts: u64) -> Beacon {
        let cdn_index = self.viewers[slot].profile.cdn;
        let from = self.viewers[slot].last_heartbeat_at;
        let in_incident = self.in_cdn_incident(cdn_index, ts);
        let cdn = &self.catalog.cdns[cdn_index];
        let viewer = &mut self.viewers[slot];
        let counters = quality::play_counters(cdn, &mut self.rng, viewer, from, ts, in_incident);
        viewer.heartbeats_sent += 1;
        viewer.last_heartbeat_at = ts;
        let covers_startup_mark = viewer.heartbeats_sent == self.startup_heartbeat;
        let mut beacon = viewer.beacon(&self.catalog, BeaconType::PlayHeartbeat, ts);
        counters.apply(&mut beacon);
        quality::play_gauges(&mut self.rng, viewer, &counters, in_incident, &mut beacon);
        if covers_startup_mark {
            quality::startup_metrics(cdn, &mut self.rng, &mut beacon);
        }
        self.schedule_next_playing_step(slot, ts);
        beacon
    }

    fn on_soft_error(&mut self, slot: usize, ts: u64) -> Option<Beacon> {
        if self.viewers[slot].state != ViewerState::Playing {
            return None;
        }
        let (code, stage) = SOFT_ERROR_CODES[self.rng.random_range(0..SOFT_ERROR_CODES.len())];
        let mut beacon = self.viewers[slot].beacon(&self.catalog, BeaconType::PlayError, ts);
        beacon.code = Some(code.to_string());
        beacon.fatal = Some(false);
        beacon.category = Some(ErrorCategory::Technical);
        beacon.stage = Some(stage);
        Some(beacon)
    }

    fn on_fatal_error(&mut self, slot: usize, ts: u64) -> Beacon {
        let end_delay_ms = model::uniform_u64(&mut self.rng, 5, 60);
        let viewer = &mut self.viewers[slot];
        viewer.end_reason = EndReason::Error;
        let outcome = viewer.outcome;
        let mut beacon = viewer.beacon(&self.catalog, BeaconType::PlayError, ts);
        beacon.fatal = Some(true);
        match outcome {
            Outcome::BusinessError(code) => {
                beacon.code = Some(BUSINESS_ERROR_CODES[code].to_string());
                beacon.category = Some(ErrorCategory::Business);
            }
            Outcome::TechnicalError(stage) => {
                beacon.code = Some(model::technical_error_code(stage).to_string());
                beacon.category = Some(ErrorCategory::Technical);
                beacon.stage = Some(stage);
            }
            Outcome::Plays | Outcome::GivesUp => {
                beacon.code = Some(model::technical_error_code(ErrorStage::Playback).to_string());
                beacon.category = Some(ErrorCategory::Technical);
                beacon.stage = Some(ErrorStage::Playback);
            }
        }
        self.schedule_viewer(slot, ts + end_delay_ms, ViewerStep::PlayEnd);
        beacon
    }

    fn on_play_end(&mut self, slot: usize, ts: u64) -> Beacon {
        let cdn_index = self.viewers[slot].profile.cdn;
        let in_incident = self.in_cdn_incident(cdn_index, ts);
        let leave_delay_ms = model::uniform_u64(&mut self.rng, 30, 1_200);
        let viewer = &mut self.viewers[slot];
        let was_playing = viewer.state == ViewerState::Playing;
        viewer.state = ViewerState::Ended;
        // A playing session reports its last partial interval; one that ends right at a heartbeat
        // reports an interval of 0 ms, with nothing in it.
        let counters = if !was_playing {
            None
        } else if ts > viewer.last_heartbeat_at {
            let from = viewer.last_heartbeat_at;
            Some(quality::play_counters(
                &self.catalog.cdns[cdn_index],
                &mut self.rng,
                viewer,
                from,
                ts,
                in_incident,
            ))
        } else {
            Some(quality::PlayCounters::EMPTY)
        };
        let mut beacon = viewer.beacon(&self.catalog, BeaconType::PlayEnd, ts);
        beacon.reason = Some(viewer.end_reason.as_str().to_string());
        beacon.first_frame_seen = Some(viewer.first_frame_seen);
        if let Some(counters) = counters {
            counters.apply(&mut beacon);
        }
        self.schedule_viewer(slot, ts + leave_delay_ms, ViewerStep::RoomLeave);
        beacon
    }

    fn on_room_leave(&mut self, slot: usize, ts: u64) -> Beacon {
        let rejoin_delay_ms = model::uniform_u64(&mut self.rng, 3_000, 30_000);
        let viewer = &mut self.viewers[slot];
        let mut beacon = viewer.beacon(&self.catalog, BeaconType::RoomLeave, ts);
        beacon.reason = Some(viewer.end_reason.as_str().to_string());
        if viewer.rejoin {
            viewer.state = ViewerState::Away;
            self.schedule_viewer(slot, ts + rejoin_delay_ms, ViewerStep::Rejoin);
            return beacon;
        }
        viewer.state = ViewerState::Free;
        viewer.generation += 1;
        self.free_slots.push(slot as u32);
        beacon
    }

    fn on_publisher_step(&mut self, room: usize, step: PublisherStep, ts: u64) -> Beacon {
        match step {
            PublisherStep::Start => {
                let publisher = &mut self.publishers[room];
                publisher.last_heartbeat_at = ts;
                let (width, height, fps, _) = model::CAPTURE_SETUPS[publisher.capture];
                let mut beacon = publisher.beacon(&self.catalog, BeaconType::PushStart, ts);
                beacon.capture_width = Some(width);
                beacon.capture_height = Some(height);
                beacon.capture_fps = Some(fps);
                beacon.encoder = Some(self.catalog.encoders[publisher.encoder].clone());
                self.schedule_next_push_step(room, ts);
                beacon
            }
            PublisherStep::Heartbeat => {
                let (counters, jittering) = self.push_interval(room, ts);
                let publisher = &mut self.publishers[room];
                let mut beacon = publisher.beacon(&self.catalog, BeaconType::PushHeartbeat, ts);
                counters.apply(&mut beacon);
                quality::push_gauges(&mut self.rng, publisher, jittering, &mut beacon);
                self.schedule_next_push_step(room, ts);
                beacon
            }
            PublisherStep::End => {
                // The last partial interval, or an interval of 0 ms right at a heartbeat.
                let counters = if ts > self.publishers[room].last_heartbeat_at {
                    self.push_interval(room, ts).0
                } else {
                    quality::PushCounters::EMPTY
                };
                let publisher = &mut self.publishers[room];
                let mut beacon = publisher.beacon(&self.catalog, BeaconType::PushEnd, ts);
                beacon.reason = Some(EndReason::Ended.as_str().to_string());
                counters.apply(&mut beacon);
                beacon
            }
        }
    }

    /// The push counters from the last heartbeat to `ts`, and whether the publisher jittered in it.
    fn push_interval(&mut self, room: usize, ts: u64) -> (quality::PushCounters, bool) {
        let from = self.publishers[room].last_heartbeat_at;
        let jitter_overlap_ms = self
            .jitter
            .filter(|window| window.target == room)
            .map_or(0, |window| window.overlap_ms(from, ts));
        let counters = quality::push_counters(&mut self.rng, from, ts, jitter_overlap_ms);
        self.publishers[room].last_heartbeat_at = ts;
        (counters, jitter_overlap_ms > 0)
    }

    /// The next push heartbeat, or `push_end` at the end of the simulation.
    fn schedule_next_push_step(&mut self, room: usize, ts: u64) {
        let next_heartbeat_at = ts + self.interval_ms;
        let (step, at) = if next_heartbeat_at < self.end_ms {
            (PublisherStep::Heartbeat, next_heartbeat_at)
        } else if self.end_ms.saturating_sub(ts) < END_AT_TICK_MS {
            (PublisherStep::End, ts)
        } else {
            (PublisherStep::End, self.end_ms)
        };
        self.schedule(
            at,
            Action::Publisher {
                room: room as u32,
                step,
            },
        );
    }

    /// Turns a valid beacon into one the collector must refuse: an enrichment field set by the SDK, an
    /// empty session id, a wrong contract version, or a missing required field.
    fn corrupt(&mut self, beacon: &mut Beacon) {
        match self.invalid_rng.random_range(0..4) {
            0 => beacon.received_at = Some(beacon.ts),
            1 => beacon.session_id.clear(),
            2 => beacon.v = 2,
            _ => match beacon.kind.family() {
                Family::Room => beacon.user_id = None,
                Family::Play | Family::Push => beacon.cdn = None,
            },
        }
    }
}

impl Iterator for BeaconStream {
    type Item = Beacon;

    fn next(&mut self) -> Option<Beacon> {
        if self.max_beacons.is_some_and(|max| self.emitted >= max) {
            return None;
        }
        loop {
            let event = self.queue.pop()?;
            let Some(mut beacon) = self.handle(event) else {
                continue;
            };
            self.emitted += 1;
            if self.invalid_fraction > 0.0 && self.invalid_rng.random_bool(self.invalid_fraction) {
                self.corrupt(&mut beacon);
            }
            return Some(beacon);
        }
    }
}
