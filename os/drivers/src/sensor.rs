//! A demo sensor: each read returns the next reading of a deterministic temperature curve.

use testudo_scheme::{Errno, Grant, NodeKind, Opened, Rights, SchemeProvider};

/// Serves `sensor`.
#[derive(Debug, Default)]
pub struct SensorProvider {
    readings: u64,
}

/// A handle on the sensor.
#[derive(Debug, Clone)]
pub struct SensorChannel;

impl SensorProvider {
    /// The `n`th reading in tenths of a degree: a triangle wave between 18.0 and 26.0 C.
    pub fn reading(n: u64) -> i64 {
        let phase = (n % 80) as i64;
        let offset = if phase < 40 { phase } else { 80 - phase };
        180 + 2 * offset
    }
}

impl SchemeProvider for SensorProvider {
    type Node = SensorChannel;

    fn root(&mut self, _grant: &Grant) -> Result<SensorChannel, Errno> {
        Ok(SensorChannel)
    }

    fn open(
        &mut self,
        _parent: &SensorChannel,
        path: &str,
        _rights: Rights,
    ) -> Result<Opened<SensorChannel>, Errno> {
        match path {
            "temperature" => Ok(Opened::Node(SensorChannel)),
            _ => Err(Errno::ENOENT),
        }
    }

    fn read(&mut self, _node: &mut SensorChannel, buf: &mut [u8]) -> Result<usize, Errno> {
        let tenths = Self::reading(self.readings);
        self.readings += 1;
        let line = format!("temperature {}.{} C\n", tenths / 10, tenths % 10);
        if buf.len() < line.len() {
            return Err(Errno::EINVAL);
        }
        buf[..line.len()].copy_from_slice(line.as_bytes());
        Ok(line.len())
    }

    fn fstat(&mut self, _node: &SensorChannel) -> Result<(NodeKind, u64), Errno> {
        Ok((NodeKind::Stream, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_stay_in_range_and_repeat() {
        for n in 0..200 {
            let r = SensorProvider::reading(n);
            assert!((180..=260).contains(&r));
            assert_eq!(r, SensorProvider::reading(n + 80));
        }
    }
}
