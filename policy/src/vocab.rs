//! The policy vocabulary: enumerations shared by annotations and the config file.

use std::fmt;

/// Defines a closed set of textual values with parsing that lists what is allowed.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every accepted spelling, in documentation order.
            pub const ALLOWED: &'static [&'static str] = &[$($text),+];

            /// The canonical spelling.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses the exact canonical spelling.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// How strictly members of a group are spread over a topology domain.
    Spread {
        /// A hard rule: placements that break it are refused.
        Required => "required",
        /// A soft rule: placements that break it score lower.
        Preferred => "preferred",
        /// Not considered.
        Off => "off",
    }
}

vocabulary! {
    /// The quorum guard: which failure domain must never hold a majority of voting members.
    Quorum {
        /// No zone may hold more than floor((n-1)/2) of the n voting members.
        Zone => "zone",
        /// No guard.
        Off => "off",
    }
}

vocabulary! {
    /// How a pod's local data steers placement.
    LocalData {
        /// Only nodes that hold (or can provide) the pod's local volumes are feasible.
        Require => "require",
        /// Nodes holding the data score higher; the hard volume constraints still apply.
        Prefer => "prefer",
        /// Local data is not considered beyond what Kubernetes itself enforces.
        Off => "off",
    }
}

vocabulary! {
    /// The QoS class the webhook shapes container resources for.
    QosMode {
        /// requests == limits for cpu and memory in every container (Guaranteed QoS).
        Guaranteed => "guaranteed",
        /// requests and limits are filled in from the profile but may differ.
        Burstable => "burstable",
    }
}

vocabulary! {
    /// A pod's role in its replica group.
    Role {
        /// The primary / leader / master member.
        Primary => "primary",
        /// Any other member.
        Replica => "replica",
    }
}

/// Renders an allowed-values list for error messages: `required, preferred, off`.
#[must_use]
pub fn allowed_list(values: &[&str]) -> String {
    values.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_spelling() {
        for s in Spread::ALLOWED {
            assert_eq!(Spread::parse(s).map(Spread::as_str), Some(*s));
        }
        for s in LocalData::ALLOWED {
            assert_eq!(LocalData::parse(s).map(LocalData::as_str), Some(*s));
        }
        assert_eq!(Quorum::parse("Zone"), None, "values are case-sensitive");
    }
}

/// The entry of `known` closest to `word` (edit distance ≤ 2, case-insensitive), for
/// "did you mean" hints.
#[must_use]
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let w: Vec<char> = word.to_ascii_lowercase().chars().collect();
    known
        .iter()
        .map(|k| (edit_distance(&w, &k.to_ascii_lowercase().chars().collect::<Vec<_>>()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod closest_tests {
    #[test]
    fn suggests_near_misses_only() {
        assert_eq!(super::closest("zoneSpred", &["zoneSpread", "nodeSpread"]), Some("zoneSpread"));
        assert_eq!(super::closest("weights", &["zoneSpread"]), None);
    }
}
