import Foundation

/// How the backup code touches files on a target, which whoever can write the target controls: a
/// symlink there must not redirect a write onto the node's own files, and a FIFO, device or huge
/// file must not hang or exhaust a node or a restore. Every open refuses to follow a symlink and
/// accepts only a regular file; reads are bounded.
enum TargetFiles {
  /// Bounds on what is read whole: logs and `backup.json` (64 MiB; a manifest line is ~400 bytes),
  /// and a segment (its frames and a margin for the header).
  static let maximumLogBytes = 64 << 20

  /// Opens an existing file for reading: no symlink, a regular file, non-blocking open (a FIFO
  /// would otherwise wait for a writer).
  /// - Returns: the descriptor and the file's size, or nil if it does not exist.
  static func openForReading(_ path: String) throws -> (fd: Int32, size: Int64)? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
    guard fd >= 0 else {
      if errno == ENOENT { return nil }
      throw StorageError(.corrupted, "\(path) cannot be opened (\(String(cString: strerror(errno)))): not a regular file of the backup")
    }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      close(fd)
      throw StorageError(.corrupted, "\(path) is not a regular file")
    }
    return (fd, Int64(info.st_size))
  }

  /// The whole file at `path` (at most `limit` bytes, or exactly `size` if given), or nil if it
  /// does not exist.
  static func read(_ path: String, limit: Int = maximumLogBytes, size expected: Int64? = nil) throws -> [UInt8]? {
    guard let (fd, size) = try openForReading(path) else { return nil }
    defer { close(fd) }
    if let expected, size != expected {
      throw StorageError(.corrupted, "\(path) does not match the manifest (\(size) bytes, not \(expected))")
    }
    guard size <= Int64(expected.map { Int($0) } ?? limit) else {
      throw StorageError(.corrupted, "\(path) is larger than any file of a backup (\(size) bytes)")
    }
    var bytes = [UInt8](repeating: 0, count: Int(size))
    var done = 0
    while done < bytes.count {
      let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, $0.count - done, off_t(done)) }
      guard n > 0 else { throw StorageError(.io, "cannot read \(path)") }
      done += n
    }
    return bytes
  }

  /// Opens (creating, mode 0600) a file to append to or rewrite, refusing a symlink or anything
  /// but a regular file.
  static func openForWriting(_ path: String, flags: Int32 = 0) throws -> Int32 {
    let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | flags, 0o600)
    guard fd >= 0 else { throw StorageError(.io, "cannot write \(path): \(String(cString: strerror(errno)))") }
    var info = stat()
    guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      close(fd)
      throw StorageError(.io, "cannot write \(path): not a regular file")
    }
    return fd
  }

  /// Creates a directory (0700), and with `parents` every missing parent; refuses a symlink where
  /// the directory should be. Without `parents` the parent must exist: a generation is never made
  /// under a target that is gone (an unmounted volume), which would put a backup on the node's disk.
  static func makeDirectory(_ path: String, parents: Bool = false) throws {
    var info = stat()
    if lstat(path, &info) == 0 {
      guard info.st_mode & S_IFMT == S_IFDIR else { throw StorageError(.io, "\(path) is not a directory") }
      return
    }
    do {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: parents, attributes: [.posixPermissions: 0o700])
    } catch {
      throw StorageError(.notFound, "cannot make \(path): is the target's volume mounted?")
    }
    syncDirectory(of: path)
  }

  /// Makes a new entry in `path`'s directory durable.
  static func syncDirectory(of path: String) {
    let fd = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_CLOEXEC | O_DIRECTORY)
    if fd >= 0 {
      fsync(fd)
      close(fd)
    }
  }
}
