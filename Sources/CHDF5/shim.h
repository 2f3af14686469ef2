// HDF5's C library (Debian: libhdf5-dev; pkg-config `hdf5`), for Keras weight files. HDF5 spells
// its constants as macros that call into the library (H5F_ACC_RDONLY, H5T_NATIVE_FLOAT), which Swift
// cannot import: these inline functions wrap the few calls CellAudit makes, read-only.
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/// Turns off HDF5's printing of error stacks (every failure is reported by its caller).
static inline void cellaudit_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/// Opens an HDF5 file held in memory (copied), read-only, under a name of its own; < 0 on failure.
static inline hid_t cellaudit_h5_open_image(const void *bytes, size_t length, const char *name) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    hid_t file = -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_file_image(fapl, (void *)bytes, length) >= 0)
        file = H5Fopen(name, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return file;
}

/// Opens an HDF5 file on disk, read-only; < 0 on failure.
static inline hid_t cellaudit_h5_open_path(const char *path) { return H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }

static inline void cellaudit_h5_close_file(hid_t file) { H5Fclose(file); }

/// Whether every link of the relative `path` ("a/b/c") exists under `location`.
static inline int cellaudit_h5_path_exists(hid_t location, const char *path) {
    char buffer[1024];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buffer) return 0;
    memcpy(buffer, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buffer[i] != '/' && buffer[i] != 0) continue;
        char saved = buffer[i];
        buffer[i] = 0;
        if (H5Lexists(location, buffer, H5P_DEFAULT) <= 0) return 0;
        buffer[i] = saved;
    }
    return 1;
}

/// The object at `path` under `location` (a group or a dataset); < 0 when there is none.
static inline hid_t cellaudit_h5_open_object(hid_t location, const char *path) {
    if (!cellaudit_h5_path_exists(location, path)) return -1;
    return H5Oopen(location, path, H5P_DEFAULT);
}

static inline void cellaudit_h5_close_object(hid_t object) { H5Oclose(object); }

/// 1 for a group, 2 for a dataset, 0 for anything else.
static inline int cellaudit_h5_kind(hid_t object) {
    H5I_type_t type = H5Iget_type(object);
    return type == H5I_GROUP ? 1 : type == H5I_DATASET ? 2 : 0;
}

/// The number of links in a group; < 0 on failure.
static inline long long cellaudit_h5_child_count(hid_t group) {
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0) return -1;
    return (long long)info.nlinks;
}

/// The name of the group's link `index` (by name order) into `buffer`; its length, < 0 on failure.
static inline long long cellaudit_h5_child_name(hid_t group, unsigned long long index, char *buffer, size_t size) {
    return (long long)H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, (hsize_t)index, buffer, size, H5P_DEFAULT);
}

/// A dataset's rank (< 0 on failure) and, up to `capacity`, its dimensions.
static inline int cellaudit_h5_dims(hid_t dataset, unsigned long long *dims, int capacity) {
    hid_t space = H5Dget_space(dataset);
    if (space < 0) return -1;
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank >= 0 && rank <= capacity) {
        hsize_t d[32];
        if (rank > 32 || H5Sget_simple_extent_dims(space, d, NULL) < 0) rank = -1;
        else for (int i = 0; i < rank; i++) dims[i] = (unsigned long long)d[i];
    }
    H5Sclose(space);
    return rank;
}

/// Whether a dataset holds floating-point numbers.
static inline int cellaudit_h5_is_float(hid_t dataset) {
    hid_t type = H5Dget_type(dataset);
    if (type < 0) return 0;
    int result = H5Tget_class(type) == H5T_FLOAT;
    H5Tclose(type);
    return result;
}

/// Reads a whole floating-point dataset as float32 (HDF5 converts float64 and float16); < 0 on failure.
static inline int cellaudit_h5_read_floats(hid_t dataset, float *out) {
    return H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0 ? -1 : 0;
}

/// The strings of attribute `name` of the object at `path` (a scalar string or a 1-D array of
/// strings, fixed-length or variable-length), each followed by a NUL, into `out` when it holds
/// `capacity` bytes. Returns the bytes needed (call again with a larger buffer when it exceeds
/// `capacity`), 0 for an empty non-string array (h5py writes an empty list so), -1 when there is
/// no such attribute, -2 when it holds something else or cannot be read. ASCII and UTF-8 strings
/// are both read (the memory type takes the attribute's character set).
static inline long long cellaudit_h5_attribute_strings(hid_t location, const char *path, const char *name, char *out, size_t capacity) {
    hid_t object = path[0] ? cellaudit_h5_open_object(location, path) : location;
    if (object < 0) return -1;
    long long needed = -1;
    if (H5Aexists(object, name) > 0) {
        needed = -2;
        hid_t attribute = H5Aopen(object, name, H5P_DEFAULT);
        hid_t type = attribute >= 0 ? H5Aget_type(attribute) : -1;
        hid_t space = attribute >= 0 ? H5Aget_space(attribute) : -1;
        hssize_t count = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
        if (type >= 0 && count == 0) {
            needed = 0;
        } else if (type >= 0 && count > 0 && count < (1 << 20) && H5Tget_class(type) == H5T_STRING) {
            hid_t memory = H5Tcopy(H5T_C_S1);
            H5T_cset_t cset = H5Tget_cset(type);
            if (cset >= 0) H5Tset_cset(memory, cset);
            if (H5Tis_variable_str(type) > 0) {
                char **strings = (char **)calloc((size_t)count, sizeof(char *));
                H5Tset_size(memory, H5T_VARIABLE);
                if (strings && H5Aread(attribute, memory, strings) >= 0) {
                    needed = 0;
                    for (hssize_t i = 0; i < count; i++) {
                        size_t n = strings[i] ? strlen(strings[i]) : 0;
                        if ((size_t)needed + n + 1 <= capacity) { if (n) memcpy(out + needed, strings[i], n); out[needed + n] = 0; }
                        needed += (long long)n + 1;
                    }
                    H5Dvlen_reclaim(memory, space, H5P_DEFAULT, strings);
                }
                free(strings);
            } else {
                size_t size = H5Tget_size(type);
                char *buffer = size > 0 && size < (1 << 20) ? (char *)calloc((size_t)count, size) : NULL;
                H5Tset_size(memory, size);
                H5Tset_strpad(memory, H5T_STR_NULLPAD);   // a full-length string keeps its last character
                if (buffer && H5Aread(attribute, memory, buffer) >= 0) {
                    needed = 0;
                    for (hssize_t i = 0; i < count; i++) {
                        const char *s = buffer + (size_t)i * size;
                        size_t n = strnlen(s, size);
                        if ((size_t)needed + n + 1 <= capacity) { if (n) memcpy(out + needed, s, n); out[needed + n] = 0; }
                        needed += (long long)n + 1;
                    }
                }
                free(buffer);
            }
            H5Tclose(memory);
        }
        if (space >= 0) H5Sclose(space);
        if (type >= 0) H5Tclose(type);
        if (attribute >= 0) H5Aclose(attribute);
    }
    if (path[0]) H5Oclose(object);
    return needed;
}
