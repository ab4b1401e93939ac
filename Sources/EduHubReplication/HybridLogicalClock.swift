import EduHubCore
import Synchronization

/// A hybrid logical clock timestamp: 48 bits of wall-clock milliseconds and a 16-bit counter for
/// events within one millisecond, in one ordered 64-bit value.
public struct HLCTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let rawValue: UInt64

  public init(rawValue: UInt64) { self.rawValue = rawValue }

  public init(milliseconds: UInt64, counter: UInt16) {
    rawValue = (milliseconds << 16) | UInt64(counter)
  }

  public var milliseconds: UInt64 { rawValue >> 16 }
  public var counter: UInt16 { UInt16(truncatingIfNeeded: rawValue) }

  public static let zero = HLCTimestamp(rawValue: 0)

  public static func < (lhs: HLCTimestamp, rhs: HLCTimestamp) -> Bool { lhs.rawValue < rhs.rawValue }

  public var description: String { "\(milliseconds).\(counter)" }
}

/// Why a clock refused a timestamp.
public typealias ClockError = Failure<ClockFailure>
public enum ClockFailure {}

/// A hybrid logical clock (Kulkarni et al.): timestamps that never go backwards on one node, stay
/// close to wall time, and order causally related events across nodes even when their wall clocks
/// are skewed (an offline school's clock may be wrong by minutes).
///
/// Thread-safe. Persist `last` after writes and hand it back at start (`init(resumingAfter:)`), so a
/// restarted node never issues a timestamp it issued before.
public final class HybridLogicalClock: Sendable {
  private let state: Mutex<HLCTimestamp>
  private let wallClock: @Sendable () -> UInt64
  /// How far ahead of our wall clock a remote timestamp may be before it is refused (a node whose
  /// clock is days ahead must not drag every clock along).
  public let maxDriftMilliseconds: UInt64

  /// - Parameters:
  ///   - last: the last timestamp issued before (persisted), or `.zero`.
  ///   - wallClock: milliseconds since the epoch (injected for tests).
  public init(
    resumingAfter last: HLCTimestamp = .zero, maxDriftMilliseconds: UInt64 = 5 * 60 * 1000,
    wallClock: @escaping @Sendable () -> UInt64 = HybridLogicalClock.systemMilliseconds
  ) {
    self.state = Mutex(last)
    self.wallClock = wallClock
    self.maxDriftMilliseconds = maxDriftMilliseconds
  }

  /// The last timestamp issued or observed.
  public var last: HLCTimestamp { state.withLock { $0 } }

  /// A new timestamp for a local event, greater than every one issued or observed before.
  public func now() -> HLCTimestamp {
    let wall = wallClock()
    return state.withLock { last in
      let next: HLCTimestamp
      if wall > last.milliseconds {
        next = HLCTimestamp(milliseconds: wall, counter: 0)
      } else if last.counter < UInt16.max {
        next = HLCTimestamp(milliseconds: last.milliseconds, counter: last.counter + 1)
      } else {
        // Counter exhausted within one millisecond: borrow the next millisecond.
        next = HLCTimestamp(milliseconds: last.milliseconds + 1, counter: 0)
      }
      last = next
      return next
    }
  }

  /// Takes a remote timestamp into account: later local timestamps will be greater than it.
  /// - Throws: ``ClockError`` if it is further ahead of our wall clock than the allowed drift.
  @discardableResult
  public func observe(_ remote: HLCTimestamp) throws(ClockError) -> HLCTimestamp {
    let wall = wallClock()
    guard remote.milliseconds <= wall + maxDriftMilliseconds else {
      throw ClockError(
        "a timestamp \(remote.milliseconds - wall) ms ahead of this node's clock exceeds the allowed drift")
    }
    return state.withLock { last in
      if remote > last { last = remote }
      return last
    }
  }

  /// The system's wall clock in milliseconds since 1970.
  public static let systemMilliseconds: @Sendable () -> UInt64 = {
    var spec = timespec()
    clock_gettime(CLOCK_REALTIME, &spec)
    return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
  }
}

#if canImport(Glibc)
  import Glibc
#endif
