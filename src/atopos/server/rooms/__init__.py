"""Rooms on a node: creation, the RAM-only relay over WebSockets, the room bus
(`mount.RoomsProduct` is what the app mounts; `limits` is read by the config too, so this
package imports nothing on its own)."""
