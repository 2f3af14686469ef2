import ArgumentParser
import CellAuditOpenCL
import Foundation

// PoCL finds no device without a writable cache directory: provide one before any OpenCL call.
BackendSelection.preparePoclCache()
CellAudit.main()
