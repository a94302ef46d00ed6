//! An inference server's comings and goings, as the element reports them: one warning when it is
//! lost (not one per frame), `server-status`, an `asyncdetect-server` bus message on each change,
//! and the back-off between attempts while it is away.

use std::time::Instant;

use gst::glib;
use gst::prelude::*;

use super::CAT;
use super::mailbox::Shared;
use crate::backoff::Backoff;

pub struct ServerHealth {
    backoff: Backoff,
    /// Since when the server has been away.
    away_since: Option<Instant>,
    /// `ready` has been reported since the last change.
    ready: bool,
}

impl ServerHealth {
    /// A served model's server, being reached: `server-status` says so.
    pub fn connecting(shared: &Shared) -> ServerHealth {
        shared.stats.set_server_status("connecting".into());
        ServerHealth {
            backoff: Backoff::default(),
            away_since: None,
            ready: false,
        }
    }

    /// The server could not be used (`why` names it and the problem). Returns false when the
    /// element stopped during the back-off that follows.
    pub fn lost(&mut self, element: &glib::WeakRef<gst::Element>, shared: &Shared, why: &str) -> bool {
        shared.stats.set_server_status(format!("retrying: {why}"));
        self.ready = false;
        if self.away_since.is_none() {
            self.away_since = Some(Instant::now());
            shared.set_server_away(true);
            if let Some(element) = element.upgrade() {
                gst::element_warning!(
                    element,
                    gst::ResourceError::Read,
                    (
                        "{}; retrying until it answers (the video goes on without new detections)",
                        why
                    )
                );
                post(&element, "retrying", Some(why), None);
            }
        }
        shared.pause(self.backoff.next_wait())
    }

    /// The server answered.
    pub fn answered(&mut self, element: &glib::WeakRef<gst::Element>, shared: &Shared) {
        self.backoff.reset();
        if self.ready {
            return;
        }
        self.ready = true;
        let away_for = self.away_since.take().map(|since| since.elapsed());
        shared.stats.set_server_status("ready".into());
        shared.set_server_away(false);
        if let Some(element) = element.upgrade() {
            if let Some(away_for) = away_for {
                gst::info!(
                    CAT,
                    obj = element,
                    "The inference server answers again after {away_for:?}"
                );
            }
            post(&element, "ready", None, away_for.map(|d| d.as_secs_f64()));
        }
    }
}

fn post(element: &gst::Element, status: &str, reason: Option<&str>, away_seconds: Option<f64>) {
    let mut structure = gst::Structure::builder("asyncdetect-server").field("status", status);
    if let Some(reason) = reason {
        structure = structure.field("reason", reason);
    }
    if let Some(seconds) = away_seconds {
        structure = structure.field("outage-seconds", seconds);
    }
    let _ = element.post_message(
        gst::message::Element::builder(structure.build())
            .src(element)
            .build(),
    );
}
