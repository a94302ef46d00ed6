//! Class-name files. No GStreamer types.
//!
//! Two layouts are accepted, one entry per line:
//! - `<id> <name>` (id, then spaces or a tab, then the name), as in TensorFlow/Coral label maps whose
//!   ids have gaps;
//! - a bare name per line, whose id is its line number counting from 0 (blank lines are skipped and
//!   do not count).
//!
//! A file must use one layout throughout; mixing them, repeating an id or having no entry is an error.

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labels {
    names: HashMap<i32, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LabelsError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for LabelsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "line {}: {}", self.line, self.reason)
        }
    }
}

impl std::error::Error for LabelsError {}

impl Labels {
    pub fn parse(text: &str) -> Result<Labels, LabelsError> {
        let mut names = HashMap::new();
        let mut with_ids: Option<bool> = None;
        let mut next_plain_id = 0;
        for (index, raw) in text.lines().enumerate() {
            let line_number = index + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line.contains('\0') || line.chars().any(|c| c.is_control() && c != '\t') {
                return Err(LabelsError {
                    line: line_number,
                    reason: "contains control characters (is this a text file?)".into(),
                });
            }
            let parsed_id = line
                .split_once(|c: char| c.is_whitespace())
                .and_then(|(id, name)| Some((id.parse::<i32>().ok()?, name.trim())));
            let this_has_id = parsed_id.is_some();
            if *with_ids.get_or_insert(this_has_id) != this_has_id {
                return Err(LabelsError {
                    line: line_number,
                    reason: "mixes `<id> <name>` lines with bare names".into(),
                });
            }
            let (id, name) = match parsed_id {
                Some((id, name)) => (id, name),
                None => {
                    next_plain_id += 1;
                    (next_plain_id - 1, line)
                }
            };
            if names.insert(id, name.to_string()).is_some() {
                return Err(LabelsError {
                    line: line_number,
                    reason: format!("class id {id} appears twice"),
                });
            }
        }
        if names.is_empty() {
            return Err(LabelsError {
                line: 0,
                reason: "no labels in the file".into(),
            });
        }
        Ok(Labels { names })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn get(&self, class_id: i32) -> Option<&str> {
        self.names.get(&class_id).map(String::as_str)
    }

    /// The name of a class, or its id as text when the file does not name it.
    pub fn name_or_id(&self, class_id: i32) -> String {
        self.get(class_id)
            .map(str::to_string)
            .unwrap_or_else(|| class_id.to_string())
    }

    pub fn contains_name(&self, name: &str) -> bool {
        self.names.values().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Every class name, in the order of their ids.
    pub fn names_by_id(&self) -> Vec<&str> {
        let mut named: Vec<(&i32, &String)> = self.names.iter().collect();
        named.sort();
        named.into_iter().map(|(_, name)| name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_name_layout_with_gaps() {
        let labels = Labels::parse("0  person\n1  bicycle\n89  toothbrush").unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.get(89), Some("toothbrush"));
        assert_eq!(labels.name_or_id(5), "5");
        assert!(labels.contains_name("Person"));
    }

    #[test]
    fn plain_layout_counts_from_zero_and_keeps_spaces() {
        let labels = Labels::parse("person\n\ntraffic light\r\ncar\n").unwrap();
        assert_eq!(labels.get(0), Some("person"));
        assert_eq!(labels.get(1), Some("traffic light"));
        assert_eq!(labels.get(2), Some("car"));
    }

    #[test]
    fn broken_files_are_rejected_with_the_line() {
        assert_eq!(Labels::parse("").unwrap_err().reason, "no labels in the file");
        let mixed = Labels::parse("0 person\ncar\n").unwrap_err();
        assert_eq!(mixed.line, 2);
        let twice = Labels::parse("1 a\n1 b\n").unwrap_err();
        assert!(twice.to_string().contains("line 2"), "{twice}");
        assert!(Labels::parse("\u{1}\u{2}binary").is_err());
    }

    #[test]
    fn shipped_coco_labels_parse() {
        let labels = Labels::parse(include_str!("../models/coco_labels.txt")).unwrap();
        assert_eq!(labels.len(), 80);
        assert_eq!(labels.get(0), Some("person"));
        assert_eq!(labels.get(2), Some("car"));
    }
}
