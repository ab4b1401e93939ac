import CSV
import EduHubAPI

/// The messages of an ingest stream read from a CSV file as they are needed (so a file of any size
/// streams in constant memory): the first names the resource and the columns; each carries up to
/// `batch` rows of text cells, which the server parses by the fields' types.
final class CSVRows: AsyncSequence, @unchecked Sendable {
  // Read by one iterator, on the task that drives the ingest.
  typealias Element = Eduhub_Catalog_V1_IngestRowsRequest

  private let reader: CSVReader
  private let code: String
  private let columns: [String]
  private let batch: Int
  private let progress: (Int) -> Void
  private var sentFirst = false
  private var rows = 0
  /// Why reading stopped early, if it did (a malformed file).
  private(set) var readError: String?

  init(reader: CSVReader, code: String, columns: [String], batch: Int, progress: @escaping (Int) -> Void) {
    self.reader = reader
    self.code = code
    self.columns = columns
    self.batch = batch
    self.progress = progress
  }

  static func describe(_ error: any Error) -> String {
    switch error as? CSVError {
    case .unicodeDecoding?, .stringEncodingMismatch?: return "not UTF-8"
    case .streamErrorHasOccurred(let underlying)?: return "\(underlying)"
    default: return "\(error)"
    }
  }

  struct AsyncIterator: AsyncIteratorProtocol {
    let source: CSVRows
    mutating func next() async throws -> Eduhub_Catalog_V1_IngestRowsRequest? { source.nextMessage() }
  }

  func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: self) }

  private func nextMessage() -> Eduhub_Catalog_V1_IngestRowsRequest? {
    var message = Eduhub_Catalog_V1_IngestRowsRequest()
    if !sentFirst {
      message.resourceCode = code
      message.columns = columns
    }
    while message.rows.count < batch, readError == nil, let cells = reader.next() {
      var row = Eduhub_Catalog_V1_IngestRow()
      // A short row keeps its count, so the server reports it; blank lines are skipped.
      if cells.count == 1, cells[0].isEmpty { continue }
      row.values = cells.map { cell in
        var value = Eduhub_Catalog_V1_Value()
        value.text = cell
        return value
      }
      message.rows.append(row)
    }
    // CSV.swift reports the end of its stream as cannotReadFile; other errors stop the import,
    // named by the line they happened on (the header is line 1; a quoted cell spanning lines
    // makes the count a lower bound).
    if let error = reader.error {
      if case .cannotReadFile? = error as? CSVError {} else {
        readError = "line \(rows + message.rows.count + 2): cannot be read (\(Self.describe(error))); the rows before it were written (an import upserts by key: fix the file and run it again)"
      }
    }
    rows += message.rows.count
    progress(rows)
    guard !sentFirst || !message.rows.isEmpty else { return nil }
    sentFirst = true
    return message
  }
}
