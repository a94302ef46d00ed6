//! Detections as JSON in the layout of DL Streamer's `gvametaconvert`, so existing consumers read
//! it. No GStreamer types: the element fills these structures from the ROI metas.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundingBox {
    pub x_min: f64,
    pub y_min: f64,
    pub x_max: f64,
    pub y_max: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionJson {
    pub bounding_box: BoundingBox,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_id: Option<i32>,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectJson {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub region_id: i32,
    /// Tracking id, where a tracker gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i32>,
    pub roi_type: String,
    pub detection: DetectionJson,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameJson {
    pub resolution: Resolution,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Presentation timestamp in nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    pub objects: Vec<ObjectJson>,
}

/// A ROI as read from a buffer, before it becomes JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub rect: (u32, u32, u32, u32),
    pub region_id: i32,
    pub roi_type: String,
    pub tracking_id: Option<i32>,
    pub label: Option<String>,
    pub label_id: Option<i32>,
    pub confidence: Option<f64>,
    /// Normalised corners from the `detection` parameters, if present.
    pub normalized: Option<[f64; 4]>,
    /// How old the result is against the buffer, in ns (asyncdetect's `age`), if known.
    pub age: Option<i64>,
}

impl Region {
    /// The `detection` label, else the ROI type (ROIs other elements made have only that).
    pub fn label(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.roi_type)
    }

    /// Normalised corners: from the `detection` parameters, else from the pixel rectangle in a
    /// `width` x `height` frame.
    pub fn corners(&self, width: u32, height: u32) -> [f64; 4] {
        self.normalized.unwrap_or_else(|| {
            let (x, y, w, h) = self.rect;
            let (fw, fh) = (width.max(1) as f64, height.max(1) as f64);
            [
                x as f64 / fw,
                y as f64 / fh,
                (x + w) as f64 / fw,
                (y + h) as f64 / fh,
            ]
        })
    }
}

impl ObjectJson {
    /// Builds the object; without normalised corners they are derived from the pixel rectangle.
    pub fn from_region(region: &Region, width: u32, height: u32) -> ObjectJson {
        let (x, y, w, h) = region.rect;
        let [x_min, y_min, x_max, y_max] = region.corners(width, height);
        ObjectJson {
            x,
            y,
            w,
            h,
            region_id: region.region_id,
            id: region.tracking_id,
            roi_type: region.roi_type.clone(),
            detection: DetectionJson {
                bounding_box: BoundingBox {
                    x_min,
                    y_min,
                    x_max,
                    y_max,
                },
                confidence: region.confidence,
                label_id: region.label_id,
                label: region.label().to_string(),
            },
        }
    }
}

impl FrameJson {
    /// One line of JSON Lines (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> Region {
        Region {
            rect: (64, 48, 32, 24),
            region_id: 3,
            roi_type: "person".into(),
            tracking_id: None,
            label: Some("person".into()),
            label_id: Some(0),
            confidence: Some(0.875),
            normalized: None,
            age: None,
        }
    }

    #[test]
    fn layout_matches_gvametaconvert() {
        let frame = FrameJson {
            resolution: Resolution {
                width: 640,
                height: 480,
            },
            source: Some("gate".into()),
            timestamp: Some(1_000_000_000),
            objects: vec![ObjectJson::from_region(&region(), 640, 480)],
        };
        let line = frame.to_line();
        assert_eq!(
            line,
            r#"{"resolution":{"width":640,"height":480},"source":"gate","timestamp":1000000000,"objects":[{"x":64,"y":48,"w":32,"h":24,"region_id":3,"roi_type":"person","detection":{"bounding_box":{"x_min":0.1,"y_min":0.1,"x_max":0.15,"y_max":0.15},"confidence":0.875,"label_id":0,"label":"person"}}]}"#
        );
    }

    #[test]
    fn tracking_ids_and_foreign_rois() {
        let mut r = region();
        r.tracking_id = Some(7);
        r.label = None;
        r.label_id = None;
        r.confidence = None;
        r.roi_type = "face".into();
        r.normalized = Some([0.0, 0.25, 0.5, 1.0]);
        let object = ObjectJson::from_region(&r, 640, 480);
        let value: serde_json::Value = serde_json::to_value(&object).unwrap();
        assert_eq!(value["id"], 7);
        assert_eq!(value["detection"]["label"], "face");
        assert!(value["detection"].get("confidence").is_none());
        assert_eq!(value["detection"]["bounding_box"]["y_min"], 0.25);
    }
}
