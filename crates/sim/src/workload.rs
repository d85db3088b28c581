//! Client operations: which kind, on which key, with what value.

use crate::rng::Rng;
use crate::scenario::{Mix, Popularity};

/// What a client does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    Get,
    Put,
    CounterAdd,
    CounterGet,
    SetAdd,
    SetRemove,
    SetGet,
    PutTtl,
    MapSet,
    MapIncrement,
    MapRemove,
    MapGet,
    DeleteRegister,
    DeleteCounter,
    DeleteSet,
    DeleteMap,
    SetNx,
}

impl OpKind {
    /// Every kind, in the order the chooser lays out their weights (the data-type kinds last,
    /// so a mix without them draws exactly as before they existed).
    pub const ALL: [OpKind; 17] = [
        OpKind::Get,
        OpKind::Put,
        OpKind::CounterAdd,
        OpKind::CounterGet,
        OpKind::SetAdd,
        OpKind::SetRemove,
        OpKind::SetGet,
        OpKind::PutTtl,
        OpKind::MapSet,
        OpKind::MapIncrement,
        OpKind::MapRemove,
        OpKind::MapGet,
        OpKind::DeleteRegister,
        OpKind::DeleteCounter,
        OpKind::DeleteSet,
        OpKind::DeleteMap,
        OpKind::SetNx,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Get => "get",
            OpKind::Put => "put",
            OpKind::CounterAdd => "counter_add",
            OpKind::CounterGet => "counter_get",
            OpKind::SetAdd => "set_add",
            OpKind::SetRemove => "set_remove",
            OpKind::SetGet => "set_get",
            OpKind::PutTtl => "put_ttl",
            OpKind::MapSet => "map_set",
            OpKind::MapIncrement => "map_increment",
            OpKind::MapRemove => "map_remove",
            OpKind::MapGet => "map_get",
            OpKind::DeleteRegister => "delete_register",
            OpKind::DeleteCounter => "delete_counter",
            OpKind::DeleteSet => "delete_set",
            OpKind::DeleteMap => "delete_map",
            OpKind::SetNx => "set_nx",
        }
    }

    /// Operations that change a key (an NX race reads first and may not write: it is not one).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            OpKind::Put
                | OpKind::CounterAdd
                | OpKind::SetAdd
                | OpKind::SetRemove
                | OpKind::PutTtl
                | OpKind::MapSet
                | OpKind::MapIncrement
                | OpKind::MapRemove
                | OpKind::DeleteRegister
                | OpKind::DeleteCounter
                | OpKind::DeleteSet
                | OpKind::DeleteMap
        )
    }

    fn weight(self, mix: &Mix) -> f64 {
        match self {
            OpKind::Get => mix.get,
            OpKind::Put => mix.put,
            OpKind::CounterAdd => mix.counter_add,
            OpKind::CounterGet => mix.counter_get,
            OpKind::SetAdd => mix.set_add,
            OpKind::SetRemove => mix.set_remove,
            OpKind::SetGet => mix.set_get,
            OpKind::PutTtl => mix.put_ttl,
            OpKind::MapSet => mix.map_set,
            OpKind::MapIncrement => mix.map_increment,
            OpKind::MapRemove => mix.map_remove,
            OpKind::MapGet => mix.map_get,
            OpKind::DeleteRegister => mix.delete_register,
            OpKind::DeleteCounter => mix.delete_counter,
            OpKind::DeleteSet => mix.delete_set,
            OpKind::DeleteMap => mix.delete_map,
            OpKind::SetNx => mix.set_nx,
        }
    }
}

/// Draws operation kinds by the mix's weights.
pub struct KindChooser {
    cumulative: Vec<(f64, OpKind)>,
}

impl KindChooser {
    pub fn new(mix: &Mix) -> KindChooser {
        let mut total = 0.0;
        let mut cumulative = Vec::new();
        for kind in OpKind::ALL {
            let w = kind.weight(mix);
            if w > 0.0 {
                total += w;
                cumulative.push((total, kind));
            }
        }
        KindChooser { cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> OpKind {
        let total = self.cumulative.last().map_or(0.0, |(t, _)| *t);
        let x = rng.unit() * total;
        self.cumulative
            .iter()
            .find(|(t, _)| x < *t)
            .or(self.cumulative.last())
            .map(|(_, k)| *k)
            .expect("validated: the mix has a positive weight")
    }
}

/// Draws key indices `0..keys` by popularity: uniform, or Zipf through its inverse CDF.
pub struct KeyChooser {
    keys: u32,
    /// Zipf only: cumulative weights, normalised to end at 1.
    cdf: Option<Vec<f64>>,
}

impl KeyChooser {
    pub fn new(keys: u32, popularity: &Popularity) -> KeyChooser {
        let cdf = match popularity {
            Popularity::Uniform => None,
            Popularity::Zipf(s) => {
                let mut acc = 0.0;
                let mut cdf: Vec<f64> = (1..=keys)
                    .map(|i| {
                        acc += 1.0 / (i as f64).powf(*s);
                        acc
                    })
                    .collect();
                for c in &mut cdf {
                    *c /= acc;
                }
                Some(cdf)
            }
        };
        KeyChooser { keys, cdf }
    }

    pub fn pick(&self, rng: &mut Rng) -> u32 {
        match &self.cdf {
            None => rng.below(self.keys as u64) as u32,
            Some(cdf) => {
                let x = rng.unit();
                (cdf.partition_point(|c| *c <= x) as u32).min(self.keys - 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_favours_the_first_keys_in_the_right_proportion() {
        let chooser = KeyChooser::new(100, &Popularity::Zipf(1.0));
        let mut rng = Rng::new(2);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[chooser.pick(&mut rng) as usize] += 1;
        }
        // P(key 1) / P(key 2) = 2 under s = 1.
        let ratio = counts[0] as f64 / counts[1] as f64;
        assert!((1.85..2.15).contains(&ratio), "ratio {ratio}");
        assert!(counts[99] > 0);
    }

    #[test]
    fn kinds_follow_the_mix_and_skip_zero_weights() {
        let mix = Mix {
            get: 3.0,
            put: 1.0,
            ..Mix::default()
        };
        let chooser = KindChooser::new(&mix);
        let mut rng = Rng::new(4);
        let gets = (0..40_000)
            .filter(|_| chooser.pick(&mut rng) == OpKind::Get)
            .count();
        assert!((29_000..31_000).contains(&gets), "{gets}");
    }
}
