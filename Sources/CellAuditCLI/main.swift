import ArgumentParser
import Foundation
import OpenCLKit

// PoCL finds no device without a writable cache directory: provide one before any OpenCL call.
OpenCL.preparePoclCache()
CellAudit.main()
