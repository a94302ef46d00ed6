//! The queue in front of a shared model instance: frames from every element using it wait their
//! turn, run in batches on the instance's lanes, and can be cancelled by their owner. What a lane
//! is (an ONNX Runtime session, a request to an inference server) is the [`Lanes`]' business.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::Duration;

use ndarray::{ArrayD, Axis, CowArray, IxDyn};

use super::Signature;
use crate::lock;

/// The most frames run together when a model takes a batch of any size.
pub const MAX_BATCH: usize = 16;

/// An input tensor's data, one frame.
#[derive(Debug, Clone)]
pub(super) enum TensorData {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

impl TensorData {
    fn same_kind(&self, other: &TensorData) -> bool {
        matches!(
            (self, other),
            (TensorData::U8(_), TensorData::U8(_)) | (TensorData::F32(_), TensorData::F32(_))
        )
    }
}

/// Lets other threads interrupt one model user's runs (an element's): stopping, flushing or
/// loading another model must not wait for an inference that may take seconds. Each frame is
/// queued under the canceller's current epoch; [`cancel`](Self::cancel) starts a new epoch, so
/// every frame queued before it is dropped from the queue, and a run whose frames are all such
/// is told to stop (ONNX Runtime stops between two of the model's operators; a request to an
/// inference server is abandoned).
#[derive(Default)]
pub struct RunCanceller {
    epoch: AtomicU64,
    /// The sessions this user's models run on (two during a model change).
    sessions: Mutex<Vec<Weak<SharedSession>>>,
}

impl RunCanceller {
    /// Interrupts every run and queued frame of this user from before the call.
    pub fn cancel(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        // Collected first: the session's queue lock is never taken while holding ours.
        let sessions: Vec<Arc<SharedSession>> = {
            let mut sessions = lock(&self.sessions);
            sessions.retain(|s| s.strong_count() > 0);
            sessions.iter().filter_map(Weak::upgrade).collect()
        };
        for session in sessions {
            session.interrupt_cancelled();
        }
    }

    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    pub(super) fn runs_on(&self, session: &Arc<SharedSession>) {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|s| s.strong_count() > 0);
        if !sessions
            .iter()
            .any(|s| std::ptr::eq(s.as_ptr(), Arc::as_ptr(session)))
        {
            sessions.push(Arc::downgrade(session));
        }
    }
}

/// Whose a queued or running frame is, and under which of its canceller's epochs it was queued.
#[derive(Clone)]
struct Owner {
    canceller: Arc<RunCanceller>,
    epoch: u64,
}

impl Owner {
    fn cancelled(&self) -> bool {
        self.canceller.epoch() != self.epoch
    }
}

/// One frame waiting for the session.
pub(super) struct Request {
    ticket: u64,
    shape: [usize; 4],
    data: TensorData,
    owner: Owner,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum RunError {
    Failed(String),
    /// The inference server could not answer (down, unreachable, too slow): worth trying again.
    Unavailable(String),
    Cancelled,
}

pub(super) type RunOutcome = Result<Vec<ArrayD<f32>>, RunError>;

/// What a lane failed with.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LaneError {
    Failed(String),
    Unavailable(String),
}

impl From<String> for LaneError {
    fn from(e: String) -> Self {
        LaneError::Failed(e)
    }
}

impl From<&str> for LaneError {
    fn from(e: &str) -> Self {
        LaneError::Failed(e.to_string())
    }
}

/// Stops one run on a lane, from another thread.
pub(super) trait StopSwitch: Any + Send + Sync {
    fn stop(&self);
}

/// The switch a lane made in [`Lanes::new_run`], as the lane's own type.
pub(super) fn switch_of<T: StopSwitch>(stop: &Arc<dyn StopSwitch>) -> Result<&T, LaneError> {
    (stop.as_ref() as &dyn Any)
        .downcast_ref::<T>()
        .ok_or_else(|| LaneError::Failed("a run switch of another kind".into()))
}

/// One batch's input: every frame's tensor, all of one element type.
pub(super) enum Frames<'a> {
    U8(Vec<&'a [u8]>),
    F32(Vec<&'a [f32]>),
}

/// What runs batches of frames: a set of lanes, each able to run one batch at a time (an ONNX
/// Runtime session, or one request in flight to an inference server).
pub(super) trait Lanes: Send + Sync {
    /// Opens lane `lane` if it is not open yet.
    fn open(&self, lane: usize) -> Result<(), String>;
    /// A stop switch for the next run.
    fn new_run(&self) -> Result<Arc<dyn StopSwitch>, String>;
    /// Runs the frames, joined along the batch dimension (`shape` says how many), on `lane` and
    /// returns each frame's outputs with a batch dimension of 1.
    fn run(
        &self,
        lane: usize,
        shape: [usize; 4],
        frames: Frames<'_>,
        stop: &Arc<dyn StopSwitch>,
    ) -> Result<Vec<Vec<ArrayD<f32>>>, LaneError>;
}

/// A batch running on a lane: how to interrupt it, and whose frames it holds.
struct RunningBatch {
    stop: Arc<dyn StopSwitch>,
    owners: Vec<Owner>,
}

#[derive(Default)]
pub(super) struct RunQueue {
    waiting: VecDeque<Request>,
    /// Outcomes by ticket, with the frame's tensor buffer handed back for reuse.
    finished: HashMap<u64, (RunOutcome, TensorData)>,
    next_ticket: u64,
    /// Lanes not running a batch now.
    free_lanes: Vec<usize>,
    /// Lanes opened so far (lanes open on demand, when frames wait and every open lane is busy).
    pub(super) opened: usize,
    /// No more lanes than this: the maximum, or fewer once opening one failed.
    lane_limit: usize,
    /// Why the last lane could not be opened, until a model reports it.
    pub(super) lane_error: Option<String>,
    /// What runs on each busy lane.
    running: HashMap<usize, RunningBatch>,
}

/// One model instance shared by every element that names it, and the queue in front of it. Frames
/// are served oldest first: each stream waits for its own result before it queues another, so with
/// every stream busy they take turns and none starves (a plain mutex lets the thread that just
/// released it take it again). Whoever reaches the head of the queue while a lane is free runs the
/// frames there on that lane, several at once when the model takes a batch of any size, and hands
/// every one its own outputs. A lane is one ONNX Runtime session of the model: ONNX Runtime's Rust
/// API runs a session for one caller at a time, so running two frames at once takes two.
pub struct SharedSession {
    /// The model's inputs and outputs as the first session declared them: read without taking a
    /// lane, which a running inference holds.
    pub(super) signature: Signature,
    /// How long its warm-up run took: elements joining later need no warm-up of their own (and
    /// would queue it behind the others' frames).
    pub(super) warm_up_time: OnceLock<Duration>,
    lanes: Box<dyn Lanes>,
    /// Lane 0 uses every core and serves a single user; several users' frames go to the other
    /// lanes, one thread each (see [`ModelOptions::adaptive`]).
    adaptive: bool,
    /// Models (elements) using the session now.
    pub(super) users: AtomicUsize,
    pub(super) queue: Mutex<RunQueue>,
    turn: Condvar,
    max_batch: usize,
    pub(super) runs: AtomicU64,
    pub(super) batched_frames: AtomicU64,
}

impl SharedSession {
    /// A session over `lanes`, at most `max_lanes` of them, running batches of up to
    /// `max_batch` frames; lane 0 is open already.
    pub(super) fn new(
        signature: Signature,
        lanes: Box<dyn Lanes>,
        max_lanes: usize,
        max_batch: usize,
        adaptive: bool,
    ) -> SharedSession {
        SharedSession {
            signature,
            warm_up_time: OnceLock::new(),
            queue: Mutex::new(RunQueue {
                free_lanes: vec![0],
                opened: 1,
                lane_limit: max_lanes.max(1),
                ..Default::default()
            }),
            lanes,
            adaptive,
            users: AtomicUsize::new(0),
            turn: Condvar::new(),
            max_batch: max_batch.max(1),
            runs: AtomicU64::new(0),
            batched_frames: AtomicU64::new(0),
        }
    }

    /// Queues one frame and returns its outputs (batch dimension 1) once it has been run, or
    /// [`RunError::Cancelled`] once `canceller` interrupts it.
    /// Also hands back `data`, so the caller can fill it again without a new allocation.
    pub(super) fn run(
        &self,
        shape: [usize; 4],
        data: TensorData,
        canceller: &Arc<RunCanceller>,
    ) -> (RunOutcome, TensorData) {
        let owner = Owner {
            canceller: canceller.clone(),
            epoch: canceller.epoch(),
        };
        let mut queue = lock(&self.queue);
        let ticket = queue.next_ticket;
        queue.next_ticket += 1;
        queue.waiting.push_back(Request {
            ticket,
            shape,
            data,
            owner,
        });
        loop {
            if let Some(outcome) = queue.finished.remove(&ticket) {
                return outcome;
            }
            if let Some(position) = queue
                .waiting
                .iter()
                .position(|r| r.ticket == ticket && r.owner.cancelled())
                && let Some(request) = queue.waiting.remove(position)
            {
                // Another frame may be at the head now.
                self.turn.notify_all();
                return (Err(RunError::Cancelled), request.data);
            }
            let at_head = queue.waiting.front().is_some_and(|r| r.ticket == ticket);
            let lane = if at_head { self.free_lane(&mut queue) } else { None };
            if let Some(lane) = lane {
                let batch = self.take_batch(&mut queue);
                let stop = match self.lanes.new_run() {
                    Ok(stop) => stop,
                    Err(e) => {
                        let error = RunError::Failed(format!("could not prepare a run: {e}"));
                        for request in batch {
                            queue
                                .finished
                                .insert(request.ticket, (Err(error.clone()), request.data));
                        }
                        queue.free_lanes.push(lane);
                        self.turn.notify_all();
                        continue;
                    }
                };
                queue.running.insert(
                    lane,
                    RunningBatch {
                        stop: stop.clone(),
                        owners: batch.iter().map(|r| r.owner.clone()).collect(),
                    },
                );
                drop(queue);
                // The next frame may be at the head now, and another lane free for it.
                self.turn.notify_all();
                if let Err(e) = self.lanes.open(lane) {
                    // No more lanes than the ones that opened; the frames go back to the head.
                    queue = lock(&self.queue);
                    queue.running.remove(&lane);
                    queue.lane_limit = lane;
                    queue.opened = lane;
                    for request in batch.into_iter().rev() {
                        queue.waiting.push_front(request);
                    }
                    queue.lane_error = Some(e);
                    continue;
                }
                let outcomes = panic::catch_unwind(AssertUnwindSafe(|| self.run_batch(lane, &batch, &stop)))
                    .unwrap_or_else(|_| {
                        batch
                            .iter()
                            .map(|_| Err(RunError::Failed("the inference panicked".to_string())))
                            .collect()
                    });
                queue = lock(&self.queue);
                queue.running.remove(&lane);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // A run told to stop fails; its frames were cancelled, not broken.
                    let outcome = match outcome {
                        Err(_) if request.owner.cancelled() => Err(RunError::Cancelled),
                        other => other,
                    };
                    queue.finished.insert(request.ticket, (outcome, request.data));
                }
                queue.free_lanes.push(lane);
                self.turn.notify_all();
                continue;
            }
            queue = self.turn.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A lane for the frames at the head of the queue: a free one, or a new one while fewer than
    /// the limit are open. An adaptive instance keeps lane 0 for a single user and the others for
    /// several, unless the others could not be opened.
    fn free_lane(&self, queue: &mut RunQueue) -> Option<usize> {
        let usable: fn(usize) -> bool = if !self.adaptive {
            |_| true
        } else if self.users.load(Ordering::Relaxed) > 1 && queue.lane_limit > 1 {
            |lane| lane != 0
        } else {
            |lane| lane == 0
        };
        if let Some(index) = queue.free_lanes.iter().position(|&lane| usable(lane)) {
            return Some(queue.free_lanes.swap_remove(index));
        }
        if queue.opened < queue.lane_limit && usable(queue.opened) {
            queue.opened += 1;
            return Some(queue.opened - 1);
        }
        None
    }

    /// The head of the queue and the frames right behind it that fit in the same batch. Frames
    /// cancelled while they waited are handed back to their owners instead.
    fn take_batch(&self, queue: &mut RunQueue) -> Vec<Request> {
        let mut batch: Vec<Request> = Vec::new();
        while let Some(next) = queue.waiting.front() {
            if next.owner.cancelled() {
                if let Some(request) = queue.waiting.pop_front() {
                    queue
                        .finished
                        .insert(request.ticket, (Err(RunError::Cancelled), request.data));
                }
                continue;
            }
            let fits = batch.first().is_none_or(|first| {
                batch.len() < self.max_batch && first.shape == next.shape && first.data.same_kind(&next.data)
            });
            if !fits {
                break;
            }
            batch.extend(queue.waiting.pop_front());
        }
        batch
    }

    /// Stops every running batch whose frames were all cancelled, and wakes the waiting callers so
    /// cancelled ones leave the queue.
    fn interrupt_cancelled(&self) {
        let queue = lock(&self.queue);
        for running in queue.running.values() {
            if running.owners.iter().all(Owner::cancelled) {
                running.stop.stop();
            }
        }
        drop(queue);
        self.turn.notify_all();
    }

    fn run_batch(&self, lane: usize, batch: &[Request], stop: &Arc<dyn StopSwitch>) -> Vec<RunOutcome> {
        let fail = |e: RunError| batch.iter().map(|_| Err(e.clone())).collect();
        let Some(first) = batch.first() else {
            return Vec::new();
        };
        let mut shape = first.shape;
        shape[0] = batch.len();
        let frames = match &first.data {
            TensorData::U8(_) => Frames::U8(
                batch
                    .iter()
                    .filter_map(|r| match &r.data {
                        TensorData::U8(d) => Some(d.as_slice()),
                        TensorData::F32(_) => None,
                    })
                    .collect(),
            ),
            TensorData::F32(_) => Frames::F32(
                batch
                    .iter()
                    .filter_map(|r| match &r.data {
                        TensorData::F32(d) => Some(d.as_slice()),
                        TensorData::U8(_) => None,
                    })
                    .collect(),
            ),
        };
        let outputs = self.lanes.run(lane, shape, frames, stop);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.batched_frames
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        match outputs {
            Ok(per_frame) if per_frame.len() == batch.len() => per_frame.into_iter().map(Ok).collect(),
            Ok(per_frame) => fail(RunError::Failed(format!(
                "{} frames ran but {} came back",
                batch.len(),
                per_frame.len()
            ))),
            Err(LaneError::Failed(e)) => fail(RunError::Failed(e)),
            Err(LaneError::Unavailable(e)) => fail(RunError::Unavailable(e)),
        }
    }
}

/// Splits every output's batch dimension so each of `frames` frames gets outputs with batch
/// dimension 1, as it would running alone.
pub(super) fn split_outputs(
    arrays: Vec<CowArray<'_, f32, IxDyn>>,
    frames: usize,
) -> Result<Vec<Vec<ArrayD<f32>>>, String> {
    let mut per_frame: Vec<Vec<ArrayD<f32>>> = vec![Vec::with_capacity(arrays.len()); frames];
    for array in arrays {
        if frames == 1 {
            per_frame[0].push(array.into_owned());
            continue;
        }
        if array.ndim() == 0 || array.shape()[0] != frames {
            return Err(format!(
                "output of shape {:?} has no batch dimension of {frames}",
                array.shape()
            ));
        }
        for (index, outputs) in per_frame.iter_mut().enumerate() {
            outputs.push(array.index_axis(Axis(0), index).insert_axis(Axis(0)).to_owned());
        }
    }
    Ok(per_frame)
}
