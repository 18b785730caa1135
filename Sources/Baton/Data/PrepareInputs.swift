import Foundation

/// The files `baton prepare` reads: each must exist and be a file. A folder is refused rather
/// than read or skipped, so that what goes into a dataset is exactly what the command line names.
public enum PrepareInputs {
    public static func check(_ files: [URL]) throws {
        guard !files.isEmpty else { throw BatonError("baton prepare: give at least one text file") }
        for file in files {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file.path, isDirectory: &isFolder) else {
                throw BatonError("\(file.path): no such file")
            }
            if isFolder.boolValue {
                throw BatonError(
                    "\(file.path): is a folder, not a text file; name the files inside it (e.g. \(file.path)/*.txt)")
            }
        }
    }
}
