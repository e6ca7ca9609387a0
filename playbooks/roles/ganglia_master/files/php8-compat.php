<?php
// ganglia-web 3.7.5 (and the Dwoo it bundles) call each(), which PHP 8
// removed; this restores it for the web frontend only (auto_prepend_file).
if (!function_exists('each')) {
    function each(&$array)
    {
        $key = key($array);
        if ($key === null) {
            return false;
        }
        $value = current($array);
        next($array);
        return array(1 => $value, 'value' => $value, 0 => $key, 'key' => $key);
    }
}
