import NIOCore
import Synchronization

/// Messages received on one stream, waiting for the task that reads them.
///
/// The event loop pushes; one task pulls. When more than `highWatermark` bytes wait, the loop stops
/// acknowledging the stream's DATA to HTTP/2 flow control, so the peer stops sending; when the reader
/// brings the queue under `lowWatermark`, `onDemand` asks the loop to acknowledge again.
final class InboundMessageQueue: Sendable {
  private struct State {
    var messages = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    var bufferedBytes = 0
    var end: RPCError??
    var waiter: CheckedContinuation<ByteBuffer?, any Error>?
    var paused = false
  }

  private let state = Mutex(State())
  let highWatermark: Int
  let lowWatermark: Int
  private let onDemand: @Sendable () -> Void

  init(highWatermark: Int = 1024 * 1024, lowWatermark: Int = 256 * 1024,
    onDemand: @escaping @Sendable () -> Void)
  {
    self.highWatermark = highWatermark
    self.lowWatermark = lowWatermark
    self.onDemand = onDemand
  }

  // MARK: Producer side (the event loop)

  /// Delivers a message. Returns false when the queue is full and the loop should stop acknowledging
  /// received bytes until `onDemand` is called.
  @discardableResult
  func push(_ message: ByteBuffer) -> Bool {
    let (waiter, accepting) = state.withLock { state -> (CheckedContinuation<ByteBuffer?, any Error>?, Bool) in
      guard state.end == nil else { return (nil, true) }
      if let waiter = state.waiter {
        state.waiter = nil
        return (waiter, true)
      }
      state.messages.append(message)
      state.bufferedBytes += message.readableBytes
      if state.bufferedBytes >= highWatermark { state.paused = true }
      return (nil, !state.paused)
    }
    waiter?.resume(returning: message)
    return accepting
  }

  /// Ends the stream: the reader gets the queued messages, then nil (or `error` thrown).
  func finish(_ error: RPCError? = nil) {
    let waiter = state.withLock { state -> CheckedContinuation<ByteBuffer?, any Error>? in
      guard state.end == nil else { return nil }
      state.end = .some(error)
      if error != nil {
        // A failed stream drops what it had not delivered.
        state.messages.removeAll()
        state.bufferedBytes = 0
      }
      let waiter = state.waiter
      state.waiter = nil
      return waiter
    }
    if let waiter {
      if let error { waiter.resume(throwing: error) } else { waiter.resume(returning: nil) }
    }
  }

  // MARK: Consumer side (one task)

  /// The next message, nil at the end of the stream.
  func next() async throws -> ByteBuffer? {
    enum Outcome { case message(ByteBuffer, demand: Bool), end, failed(RPCError), wait }
    let outcome = state.withLock { state -> Outcome in
      if let message = state.messages.popFirst() {
        state.bufferedBytes -= message.readableBytes
        var demand = false
        if state.paused, state.bufferedBytes <= lowWatermark {
          state.paused = false
          demand = true
        }
        return .message(message, demand: demand)
      }
      switch state.end {
      case .some(.some(let error)): return .failed(error)
      case .some(.none): return .end
      case .none: return .wait
      }
    }
    switch outcome {
    case .message(let message, let demand):
      if demand { onDemand() }
      return message
    case .end:
      return nil
    case .failed(let error):
      throw error
    case .wait:
      return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ByteBuffer?, any Error>) in
          enum Now { case message(ByteBuffer), end, failed(any Error), parked }
          let now = state.withLock { state -> Now in
            if let message = state.messages.popFirst() {
              state.bufferedBytes -= message.readableBytes
              return .message(message)
            }
            switch state.end {
            case .some(.some(let error)): return .failed(error)
            case .some(.none): return .end
            case .none: break
            }
            if Task.isCancelled { return .failed(CancellationError()) }
            state.waiter = continuation
            return .parked
          }
          switch now {
          case .message(let message): continuation.resume(returning: message)
          case .end: continuation.resume(returning: nil)
          case .failed(let error): continuation.resume(throwing: error)
          case .parked: break
          }
        }
      } onCancel: {
        let waiter = state.withLock { state -> CheckedContinuation<ByteBuffer?, any Error>? in
          let waiter = state.waiter
          state.waiter = nil
          return waiter
        }
        waiter?.resume(throwing: CancellationError())
      }
    }
  }
}
