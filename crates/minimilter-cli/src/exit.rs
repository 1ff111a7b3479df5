//! Exit codes, one per verdict, so scripts can branch on what the milter did.

/// Accepted (delivered, possibly modified).
pub const ACCEPTED: u8 = 0;
/// Bad input or another error of ours (unreadable file, bad option value, a
/// message the milter protocol cannot carry).
pub const ERROR: u8 = 1;
/// Command-line usage error (from clap).
#[allow(dead_code)]
pub const USAGE: u8 = 2;
/// The milter rejected (5xx).
pub const REJECTED: u8 = 3;
/// The milter tempfailed (4xx), or asked the MTA to shut the session (421).
pub const TEMPFAILED: u8 = 4;
/// The milter discarded the message.
pub const DISCARDED: u8 = 5;
/// The milter broke the protocol.
pub const PROTOCOL: u8 = 6;
/// The milter could not be reached, closed the connection, or did not give a
/// whole answer in time.
pub const UNREACHABLE: u8 = 7;
/// `check --transcript`: the recorded transaction ended before the milter
/// decided (the client reset it, quit or went away; the MTA refused it
/// for reasons of its own).
pub const NO_VERDICT: u8 = 8;

/// The table shown by `--help`.
pub const HELP: &str = "\
Exit status:
  0  accepted (delivered, possibly modified; also when only some recipients were refused)
  1  error on our side (unreadable message file, bad option value, data the
     milter protocol cannot carry)
  2  usage error
  3  rejected (5xx)
  4  tempfailed (4xx) or the milter asked to shut the session down (421)
  5  discarded
  6  protocol violation by the milter (the transcript says which)
  7  milter unreachable, connection closed, or no whole answer in time
  8  with --transcript: the recorded transaction ended before the milter
     decided (the client reset it or went away); the steps are still shown
If standard output is closed early (e.g. piped into head), the rest of the
output is dropped silently and the status is still the one above.
A NUL byte in a header line cuts the line short there, as Postfix does
(for the milter and in delivery); the transcript warns.";
