package stager

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// userAreaMetrics reports how full the user area's filesystem is, read at
// each scrape, so an alert fires before copies start failing for space.
type userAreaMetrics struct {
	dir                                      string
	size, available, inodes, availableInodes *prometheus.Desc
}

func registerUserAreaMetrics(reg prometheus.Registerer, dir string) error {
	m := &userAreaMetrics{
		dir:             dir,
		size:            prometheus.NewDesc("staging_stager_user_area_size_bytes", "Size of the user area's filesystem.", nil, nil),
		available:       prometheus.NewDesc("staging_stager_user_area_available_bytes", "Bytes of the user area's filesystem the stager may still write.", nil, nil),
		inodes:          prometheus.NewDesc("staging_stager_user_area_inodes", "Inodes (files) of the user area's filesystem.", nil, nil),
		availableInodes: prometheus.NewDesc("staging_stager_user_area_available_inodes", "Inodes of the user area's filesystem still free.", nil, nil),
	}
	if err := reg.Register(m); err != nil {
		return fmt.Errorf("register user area metrics: %w", err)
	}
	return nil
}

func (m *userAreaMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.size
	ch <- m.available
	ch <- m.inodes
	ch <- m.availableInodes
}

// Collect reports nothing when the filesystem cannot be read: the stager's
// readiness check says so already.
func (m *userAreaMetrics) Collect(ch chan<- prometheus.Metric) {
	var st unix.Statfs_t
	if err := unix.Statfs(m.dir, &st); err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	bsize := float64(st.Bsize)
	gauge(m.size, float64(st.Blocks)*bsize)
	gauge(m.available, float64(st.Bavail)*bsize)
	gauge(m.inodes, float64(st.Files))
	gauge(m.availableInodes, float64(st.Ffree))
}
