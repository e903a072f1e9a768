// Package rootless holds the hooks through which berth's lower packages
// reach helpers that run inside a user namespace, for an unprivileged
// process: the container package sets them (it has the container init
// that runs there), layer/snapshot calls them. Nothing outside berth may
// depend on it.
package rootless

// RemoveAll, when set, removes the tree at path from inside a user
// namespace that maps the calling user's subordinate IDs, where files
// and directories they own (a rootless container's writes as a user other
// than root) can be removed. The snapshot stores call it when removing a
// directory is refused to this process. It returns an error when it has
// no such namespace to offer (no subordinate IDs).
var RemoveAll func(path string) error

// Owner is the owner and mode a layer gives a file: Path is relative to
// the layer's directory, UID and GID are IDs inside a container's user
// namespace.
type Owner struct {
	Path    string `json:"path"`
	UID     int    `json:"uid"`
	GID     int    `json:"gid"`
	Mode    uint32 `json:"mode"`
	Symlink bool   `json:"symlink,omitempty"`
}

// Chown, when set, gives the files of dir (a layer just unpacked without
// chown) their owners from inside a user namespace that maps the calling
// user's subordinate IDs, and their modes again (chown can clear
// set-user-ID bits). It does nothing when the user has no subordinate
// IDs: then every file stays the user's, root inside its containers.
var Chown func(dir string, owners []Owner) error
