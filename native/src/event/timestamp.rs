//! Event times as exact microseconds since the Unix epoch, for the two forms events carry: RFC 3339
//! text and Unix seconds. Only the plain forms are read; pydantic (speedate) takes many more, and
//! those go the slow way.

use super::json::Number;

const MICROS_PER_SECOND: i64 = 1_000_000;
/// Microseconds beyond this are not all floats, so `micros / 1e6` would round twice where Python's
/// `timestamp()` (an exact integer division) rounds once: 1685 to 2255, ample for events.
const MAX_EXACT_MICROS: i64 = 1 << 53;
/// Unix seconds below 1e10 (year 2286); pydantic reads values past 2e10 as milliseconds.
const MAX_UNIX_SECONDS: f64 = 1e10;

/// `YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|±HH:MM)`, or None for any other text.
pub fn rfc3339_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
    let (hour, minute, second) = (
        number(&b[11..13])?,
        number(&b[14..16])?,
        number(&b[17..19])?,
    );
    let valid_date = (1..=9999).contains(&year) && (1..=12).contains(&month);
    if !valid_date || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None; // no leap second, no 24:00
    }
    let (fraction_micros, zone) = fraction(&b[19..])?;
    let offset_seconds = zone_offset(zone)?;
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
        - offset_seconds;
    exact(seconds * MICROS_PER_SECOND + fraction_micros)
}

/// Unix seconds from 0 up to MAX_UNIX_SECONDS, rounded to the microsecond as speedate does.
pub fn unix_micros(seconds: Number) -> Option<i64> {
    match seconds {
        Number::Int(whole) => {
            ((0..MAX_UNIX_SECONDS as i64).contains(&whole)).then_some(())?;
            exact(whole * MICROS_PER_SECOND)
        }
        Number::Float(value) => {
            (0.0..MAX_UNIX_SECONDS).contains(&value).then_some(())?;
            let whole = value.floor();
            let micros = ((value - whole) * 1e6).round() as i64; // 1_000_000 carries, as there
            exact(whole as i64 * MICROS_PER_SECOND + micros)
        }
    }
}

fn exact(micros: i64) -> Option<i64> {
    (micros.abs() <= MAX_EXACT_MICROS).then_some(micros)
}

fn number(digits: &[u8]) -> Option<i64> {
    digits.iter().try_fold(0, |total, &digit| {
        digit
            .is_ascii_digit()
            .then(|| total * 10 + i64::from(digit - b'0'))
    })
}

/// The optional `.f{1,6}` as microseconds, and what follows it (the zone).
fn fraction(rest: &[u8]) -> Option<(i64, &[u8])> {
    let Some(after_dot) = rest.strip_prefix(b".") else {
        return Some((0, rest));
    };
    let count = after_dot.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(1..=6).contains(&count) {
        return None;
    }
    let scale = 10_i64.pow(6 - count as u32);
    Some((number(&after_dot[..count])? * scale, &after_dot[count..]))
}

/// `Z` or `±HH:MM` as seconds east of UTC.
fn zone_offset(zone: &[u8]) -> Option<i64> {
    match zone {
        b"Z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (hours, minutes) = (number(&[*h1, *h2])?, number(&[*m1, *m2])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let east = hours * 3_600 + minutes * 60;
            Some(if *sign == b'+' { east } else { -east })
        }
        _ => None,
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (year ≥ 1), counting whole 400-year eras.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start in March here, so a leap day is the last day of its year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
