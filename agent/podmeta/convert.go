package podmeta

import (
	"path"
	"strings"

	v1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
)

// fromAPI turns an API pod into the facts the agent uses. It is called once per informer event,
// so lookups never convert.
func fromAPI(p *v1.Pod) Pod {
	return Pod{
		UID:           string(p.UID),
		Namespace:     p.Namespace,
		Name:          p.Name,
		QOS:           strings.ToLower(string(p.Status.QOSClass)),
		Containers:    containerIDs(p),
		MemoryLimit:   podMemoryLimit(p),
		MemoryVolumes: memoryVolumes(p),
		HostIPC:       p.Spec.HostIPC,
		Phase:         string(p.Status.Phase),
		Source:        SourceAPI,
		OOMKilled:     oomKilled(p),
	}
}

// containerIDs maps the runtime's container ids to container names. Containers that have not
// started have no id and are left out.
func containerIDs(p *v1.Pod) map[string]string {
	ids := make(map[string]string)
	for _, statuses := range [][]v1.ContainerStatus{
		p.Status.InitContainerStatuses, p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses,
	} {
		for _, s := range statuses {
			if id := stripRuntime(s.ContainerID); id != "" {
				ids[id] = s.Name
			}
		}
	}
	return ids
}

// stripRuntime drops the "<runtime>://" prefix of a status containerID ("containerd://<id>",
// "cri-o://<id>", "docker://<id>"); cgroup names carry the bare id.
func stripRuntime(id string) string {
	if _, bare, ok := strings.Cut(id, "://"); ok {
		return bare
	}
	return id
}

// podMemoryLimit is the memory limit the kubelet puts on the pod cgroup, following kubelet's
// ResourceConfigForPod (pkg/kubelet/cm/helpers_linux.go, v1.33): the aggregate from
// component-helpers' PodLimits (app containers summed, restartable init containers added, the
// max over init containers, plus overhead), used only when every container — app and init, as
// PodLimits presents them — declares a memory limit, or when a pod-level memory limit is set.
// BestEffort pods get no limit.
func podMemoryLimit(p *v1.Pod) *uint64 {
	declared := true
	limits := resourcehelper.PodLimits(p, resourcehelper.PodResourcesOptions{
		// The API server drops spec.resources unless the PodLevelResources gate is on, so a
		// pod-level limit that reached us is one the kubelet honours.
		SkipPodLevelResources: false,
		ContainerFn: func(res v1.ResourceList, _ resourcehelper.ContainerType) {
			if res.Memory().IsZero() {
				declared = false
			}
		},
	})
	if resourcehelper.IsPodLevelResourcesSet(p) && !p.Spec.Resources.Limits.Memory().IsZero() {
		declared = true
	}
	if p.Status.QOSClass == v1.PodQOSBestEffort || !declared {
		return nil
	}
	q, ok := limits[v1.ResourceMemory]
	if !ok || q.Sign() <= 0 {
		return nil
	}
	v := uint64(q.Value())
	return &v
}

// memoryVolumes lists emptyDir volumes backed by memory (tmpfs) and who mounts them at /dev/shm.
func memoryVolumes(p *v1.Pod) []Volume {
	var vols []Volume
	for _, v := range p.Spec.Volumes {
		ed := v.EmptyDir
		if ed == nil || ed.Medium != v1.StorageMediumMemory {
			continue
		}
		vol := Volume{Name: v.Name, AtDevShm: devShmMounters(p, v.Name)}
		if ed.SizeLimit != nil && ed.SizeLimit.Sign() >= 0 {
			size := uint64(ed.SizeLimit.Value())
			vol.SizeLimit = &size
		}
		vols = append(vols, vol)
	}
	return vols
}

// devShmMounters names the containers (init, app, ephemeral) that mount volume at /dev/shm.
func devShmMounters(p *v1.Pod, volume string) []string {
	var names []string
	add := func(name string, mounts []v1.VolumeMount) {
		for _, m := range mounts {
			if m.Name == volume && path.Clean(m.MountPath) == "/dev/shm" {
				names = append(names, name)
				return
			}
		}
	}
	for _, c := range p.Spec.InitContainers {
		add(c.Name, c.VolumeMounts)
	}
	for _, c := range p.Spec.Containers {
		add(c.Name, c.VolumeMounts)
	}
	for _, c := range p.Spec.EphemeralContainers {
		add(c.Name, c.VolumeMounts)
	}
	return names
}
