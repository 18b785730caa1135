/// Every error a user can meet. The description is one line that names the file or flag at fault
/// and, where there is one, what to do about it.
public struct BatonError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
