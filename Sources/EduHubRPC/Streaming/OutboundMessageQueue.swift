import NIOCore
import Synchronization

/// Messages on their way out of one stream: a task writes them, the connection's event loop reads
/// them into HTTP/2 DATA frames as flow control allows.
///
/// Bounded in bytes: a writer is suspended while more than `highWatermark` bytes wait, and resumed
/// when the peer's reading brings them under `lowWatermark`. So a slow reader of a large stream costs
/// the server a few hundred KiB, not the stream's size.
final class OutboundMessageQueue: Sendable {
  /// What a read from the queue produced.
  enum ReadResult: Equatable {
    /// `count` bytes were copied; `end` when they were the last ones.
    case bytes(count: Int, end: Bool)
    /// Nothing is available yet; the queue will call `onDataAvailable` when something is.
    case deferred
    /// The writer finished and everything was read.
    case end
  }

  private struct State {
    var buffers = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    var pendingBytes = 0
    var finished = false
    var failure: RPCError?
    var consumerDeferred = false
    var waiters: [(id: Int, continuation: CheckedContinuation<Void, any Error>)] = []
    var nextWaiterID = 0
  }

  private let state = Mutex(State())
  let highWatermark: Int
  let lowWatermark: Int
  /// Called on the writer's thread when the reader was deferred and data or the end arrived.
  private let onDataAvailable: @Sendable () -> Void

  /// - Parameter readerWaiting: whether the first write should call `onDataAvailable` (a server's
  ///   response, whose headers go out with the first message).
  init(highWatermark: Int = 256 * 1024, lowWatermark: Int = 64 * 1024, readerWaiting: Bool = false,
    onDataAvailable: @escaping @Sendable () -> Void)
  {
    self.highWatermark = highWatermark
    self.lowWatermark = lowWatermark
    self.onDataAvailable = onDataAvailable
    if readerWaiting { state.withLock { $0.consumerDeferred = true } }
  }

  // MARK: Writer side (any thread)

  /// Queues one framed message, waiting while the queue is over its high watermark.
  func write(_ buffer: ByteBuffer) async throws {
    while true {
      enum Action { case done(wake: Bool), wait, fail(any Error) }
      let action: Action = state.withLock { state in
        if let failure = state.failure { return .fail(failure) }
        if state.finished { return .fail(RPCError(.internalError, "write after the stream was finished")) }
        if state.pendingBytes < highWatermark {
          state.buffers.append(buffer)
          state.pendingBytes += buffer.readableBytes
          let wake = state.consumerDeferred
          state.consumerDeferred = false
          return .done(wake: wake)
        }
        return .wait
      }
      switch action {
      case .done(let wake):
        if wake { onDataAvailable() }
        return
      case .fail(let error):
        throw error
      case .wait:
        try await waitForRoom()
      }
    }
  }

  /// Marks the end of the messages; the reader sees `.end` once it has read everything.
  func finish() {
    let wake = state.withLock { state -> Bool in
      guard !state.finished else { return false }
      state.finished = true
      let wake = state.consumerDeferred
      state.consumerDeferred = false
      return wake
    }
    if wake { onDataAvailable() }
  }

  private func waitForRoom() async throws {
    let id = state.withLock { state -> Int in
      state.nextWaiterID += 1
      return state.nextWaiterID
    }
    try await withTaskCancellationHandler {
      try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        let resumeNow: (any Error)?? = state.withLock { state in
          if let failure = state.failure { return .some(failure) }
          if Task.isCancelled { return .some(CancellationError()) }
          if state.pendingBytes < highWatermark { return .some(nil) }
          state.waiters.append((id, continuation))
          return nil
        }
        if let outcome = resumeNow {
          if let error = outcome { continuation.resume(throwing: error) } else { continuation.resume() }
        }
      }
    } onCancel: {
      let waiter = state.withLock { state -> CheckedContinuation<Void, any Error>? in
        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return state.waiters.remove(at: index).continuation
      }
      waiter?.resume(throwing: CancellationError())
    }
  }

  // MARK: Reader side (the event loop)

  /// Copies up to `destination.count` bytes of queued messages into `destination`.
  func read(into destination: UnsafeMutableRawBufferPointer) -> ReadResult {
    var woken: [CheckedContinuation<Void, any Error>] = []
    let result = state.withLock { state -> ReadResult in
      var copied = 0
      while copied < destination.count, var front = state.buffers.first {
        let take = min(destination.count - copied, front.readableBytes)
        front.withUnsafeReadableBytes { source in
          UnsafeMutableRawBufferPointer(rebasing: destination[copied..<(copied + take)])
            .copyMemory(from: UnsafeRawBufferPointer(rebasing: source[0..<take]))
        }
        front.moveReaderIndex(forwardBy: take)
        copied += take
        if front.readableBytes == 0 {
          state.buffers.removeFirst()
        } else {
          state.buffers[state.buffers.startIndex] = front
        }
      }
      state.pendingBytes -= copied
      if state.pendingBytes <= lowWatermark, !state.waiters.isEmpty {
        woken = state.waiters.map(\.continuation)
        state.waiters.removeAll()
      }
      if copied > 0 { return .bytes(count: copied, end: state.finished && state.buffers.isEmpty) }
      if state.finished { return .end }
      state.consumerDeferred = true
      return .deferred
    }
    for waiter in woken { waiter.resume() }
    return result
  }

  /// Bytes waiting to be read.
  var pendingBytes: Int { state.withLock { $0.pendingBytes } }

  /// Ends the queue with `error`: waiting and later writes throw it, queued bytes are dropped.
  func fail(_ error: RPCError) {
    let woken = state.withLock { state -> [CheckedContinuation<Void, any Error>] in
      if state.failure == nil { state.failure = error }
      state.buffers.removeAll()
      state.pendingBytes = 0
      let waiters = state.waiters.map(\.continuation)
      state.waiters.removeAll()
      return waiters
    }
    for waiter in woken { waiter.resume(throwing: error) }
  }
}
